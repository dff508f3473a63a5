// Options shared by the subcommands that run the engine (run, bench, eval): threads, KV storage,
// paging, retrieval, the device.
#pragma once

#include <cstdint>
#include <string>

#include "tools/cli_args.h"
#include "tools/kvstore_process.h"
#include "worker/engine/generate.h"

namespace freekv {

struct EngineFlags {
  int64_t threads = 0;
  std::string kv_dtype = "bf16";
  int64_t page_tokens = 32;
  int64_t prefill_chunk = 512;
  std::string kv_memory = "16GiB";
  // Retrieval (DESIGN §3).
  std::string policy = "full";
  int64_t budget = 2048, sink = 512, recent = 512;
  double correction_threshold = 0.9;
  std::string gqa_score = "avgsm", digest = "minmax", dense_layers;
  // Where pages are offloaded: a kvstore socket, "spawn" (a private kvstore for this command), or
  // "none". The default, "auto", spawns one for the policies that offload (arkvale, freekv).
  std::string kvstore = "auto";
  // A spawned kvstore's pool, and its block size ("auto": one page of the model with its key statistics).
  std::string kvstore_pool = "8GiB", kvstore_block = "auto";
  int64_t recall_staging_pairs = 8;
  // Where steps run, and the GPU KV pool's size (DeviceOptions).
  std::string device = "cpu";
  int64_t gpu_sequences = 8, gpu_tokens = 0;
  std::string gpu_memory = "0";
  bool attend_beyond_window = false;  // EngineOptions::attend_beyond_window

  void add_to(ArgParser& parser);
  absl::StatusOr<EngineOptions> to_options() const;
  // For the commands that measure the CPU engine's internals (bench, eval): INVALID_ARGUMENT naming
  // `command` unless --device is cpu.
  absl::Status require_cpu(const std::string& command) const;
  // Starts the private kvstore when the flags ask for one (for the model in model_dir) and points
  // options at it.
  absl::StatusOr<std::unique_ptr<KvstoreProcess>> start_kvstore(EngineOptions* options, const std::string& model_dir) const;
  // For a command comparing several policies: one kvstore for all of them when any offloads.
  absl::StatusOr<std::unique_ptr<KvstoreProcess>> start_kvstore_for(const std::vector<PolicyKind>& policies,
                                                                    EngineOptions* options, const std::string& model_dir) const;
  // The options of one of those policies: the ones that do not offload run without the kvstore
  // (unless one was named explicitly), so quest stays the no-offload speed bound.
  EngineOptions for_policy(const EngineOptions& shared, PolicyKind policy) const;
};

// "full,freekv" -> the policies, or an error naming the unknown one.
absl::StatusOr<std::vector<PolicyKind>> parse_policy_list(const std::string& list);

}  // namespace freekv
