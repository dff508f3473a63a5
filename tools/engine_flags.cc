#include "tools/engine_flags.h"

#include "common/units.h"

namespace freekv {

void EngineFlags::add_to(ArgParser& p) {
  p.add_int("threads", &threads, "compute threads (0 = one per hardware thread)");
  p.add_string("kv-dtype", &kv_dtype, "storage type of KV pages: bf16 or f16");
  p.add_int("page-tokens", &page_tokens, "tokens per KV page");
  p.add_int("prefill-chunk", &prefill_chunk, "prompt tokens processed per prefill step");
  p.add_string("kv-memory", &kv_memory, "memory for KV pages, with units (e.g. 8GiB)");
}

absl::StatusOr<EngineOptions> EngineFlags::to_options() const {
  EngineOptions o;
  if (threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  o.threads = int(threads);
  if (kv_dtype == "bf16") o.kv_dtype = DType::kBF16;
  else if (kv_dtype == "f16") o.kv_dtype = DType::kF16;
  else return absl::InvalidArgumentError(absl::StrCat("--kv-dtype must be bf16 or f16, got '", kv_dtype, "'"));
  o.page_tokens = page_tokens;
  o.prefill_chunk = prefill_chunk;
  FREEKV_ASSIGN_OR_RETURN(o.kv_memory, parse_size(kv_memory));
  return o;
}

}  // namespace freekv
