#include "tools/engine_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/units.h"
#include "tools/kvstore_block.h"
#include "worker/gpu/device_backend.h"

namespace freekv {

void EngineFlags::add_to(ArgParser& p) {
  p.add_int("threads", &threads, "compute threads (0 = one per hardware thread)");
  p.add_string("kv-dtype", &kv_dtype, "storage type of KV pages: bf16 or f16");
  p.add_int("page-tokens", &page_tokens, "tokens per KV page");
  p.add_int("prefill-chunk", &prefill_chunk, "prompt tokens processed per prefill step");
  p.add_string("kv-memory", &kv_memory, "memory for local KV pages, with units (e.g. 8GiB)");
  p.add_string("policy", &policy, "retrieval policy: full, streaming, quest, arkvale or freekv");
  p.add_int("budget", &budget, "tokens attended per KV head once the context outgrows it (whole pages)");
  p.add_int("sink", &sink, "first tokens always attended");
  p.add_int("recent", &recent, "last tokens always attended (the partial page included)");
  p.add_double("correction-threshold", &correction_threshold,
               "freekv: re-select a KV head when its queries' cosine with the previous step falls below this (1 = always)");
  p.add_string("gqa-score", &gqa_score, "combine a KV head's query heads by avg (raw scores) or avgsm (softmaxed)");
  p.add_string("digest", &digest, "page digest: minmax (Quest) or center-mad (ArkVale)");
  p.add_string("dense-layers", &dense_layers, "comma-separated layers that always attend the full context");
  p.add_string("kvstore", &kvstore, "kvstore socket path, 'spawn' (private one), 'none', or 'auto' (spawn when the policy offloads)");
  p.add_string("kvstore-pool", &kvstore_pool, "pool size of a spawned kvstore");
  p.add_string("kvstore-block", &kvstore_block,
               "block size of a spawned kvstore (>= one page of all KV heads and its key statistics; auto = that)");
  p.add_int("recall-staging-pairs", &recall_staging_pairs,
            "recalls from the kvstore in flight at once, shared by every sequence and layer");
  p.add_bool("attend-beyond-window", &attend_beyond_window,
             "attend the whole context in a sliding-window model's windowed layers instead of their windows "
             "(departs from the model past the window; the GPU always does, so there requests stop at the window unless this is given)");
  p.add_string("device", &device, "where steps run: cpu, or cuda:N (the GPU runs the full policy, without a kvstore)");
  p.add_int("gpu-sequences", &gpu_sequences, "sequences the GPU holds KV for at once");
  p.add_int("gpu-tokens", &gpu_tokens, "tokens of KV the GPU holds per sequence (0 = the model's positions, at most 32768)");
  p.add_string("gpu-memory", &gpu_memory,
               "device memory the KV pool and activations may take beside the weights, with units (0 = what is free)");
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
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.policy, parse_policy(policy));
  o.retrieval.budget = budget;
  o.retrieval.sink = sink;
  o.retrieval.recent = recent;
  o.retrieval.correction_threshold = correction_threshold;
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.gqa_score, parse_gqa_score(gqa_score));
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.digest, parse_digest(digest));
  for (auto part : absl::StrSplit(dense_layers, ',', absl::SkipEmpty())) {
    int layer;
    if (!absl::SimpleAtoi(std::string(part), &layer)) {
      return absl::InvalidArgumentError(absl::StrCat("--dense-layers wants comma-separated layer numbers, got '", dense_layers, "'"));
    }
    o.retrieval.dense_layers.push_back(layer);
  }
  o.recall_staging_pairs = int(recall_staging_pairs);
  FREEKV_ASSIGN_OR_RETURN(o.device, device_options(device, gpu_sequences, gpu_tokens, gpu_memory));
  o.make_device_backend = make_device_backend;
  o.attend_beyond_window = attend_beyond_window;
  return o;
}

absl::Status EngineFlags::require_cpu(const std::string& command) const {
  if (device == "cpu") return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "freekv ", command, " runs on the CPU only so far (its query harness and phase profiles hook into the CPU ",
      "forward pass); --device ", device, " works with freekv run, and scripts/gpu-check.sh measures the GPU"));
}

absl::StatusOr<std::unique_ptr<KvstoreProcess>> EngineFlags::start_kvstore(EngineOptions* options,
                                                                           const std::string& model_dir) const {
  const bool spawn = kvstore == "spawn" || (kvstore == "auto" && options->retrieval.offloaded());
  if (!spawn) {
    if (kvstore != "auto" && kvstore != "none") options->kvstore_socket = kvstore;
    return std::unique_ptr<KvstoreProcess>();
  }
  std::string block = kvstore_block;
  if (block == "auto") {
    FREEKV_ASSIGN_OR_RETURN(block, kvstore_block_for_model(model_dir, options->page_tokens, options->kv_dtype));
  }
  FREEKV_ASSIGN_OR_RETURN(auto process, KvstoreProcess::start(kvstore_pool, block));
  options->kvstore_socket = process->socket_path();
  return process;
}

}  // namespace freekv

namespace freekv {

absl::StatusOr<std::vector<PolicyKind>> parse_policy_list(const std::string& list) {
  std::vector<PolicyKind> out;
  for (auto part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    FREEKV_ASSIGN_OR_RETURN(PolicyKind p, parse_policy(std::string(part)));
    out.push_back(p);
  }
  if (out.empty()) return absl::InvalidArgumentError("name at least one policy");
  return out;
}

absl::StatusOr<std::unique_ptr<KvstoreProcess>> EngineFlags::start_kvstore_for(const std::vector<PolicyKind>& policies,
                                                                               EngineOptions* options,
                                                                               const std::string& model_dir) const {
  const PolicyKind saved = options->retrieval.policy;
  bool any_offload = false;
  for (PolicyKind p : policies) {
    options->retrieval.policy = p;
    any_offload |= options->retrieval.offloaded();
  }
  // One policy that offloads stands for them all when the kvstore is started.
  options->retrieval.policy = any_offload ? PolicyKind::kFreekv : PolicyKind::kFull;
  auto process = start_kvstore(options, model_dir);
  options->retrieval.policy = saved;
  return process;
}

EngineOptions EngineFlags::for_policy(const EngineOptions& shared, PolicyKind policy) const {
  EngineOptions o = shared;
  o.retrieval.policy = policy;
  if (!o.retrieval.offloaded() && kvstore == "auto") o.kvstore_socket.clear();
  return o;
}

}  // namespace freekv
