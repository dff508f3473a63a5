// Options shared by the subcommands that run the engine (run, bench): threads, KV storage, paging.
#pragma once

#include <cstdint>
#include <string>

#include "tools/cli_args.h"
#include "worker/engine/generate.h"

namespace freekv {

struct EngineFlags {
  int64_t threads = 0;
  std::string kv_dtype = "bf16";
  int64_t page_tokens = 32;
  int64_t prefill_chunk = 512;
  std::string kv_memory = "16GiB";

  void add_to(ArgParser& parser);
  absl::StatusOr<EngineOptions> to_options() const;
};

}  // namespace freekv
