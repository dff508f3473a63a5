// The GPU forward pass end to end (run by scripts/gpu-check.sh, never by ctest), on a
// Llama-3.1-8B-shaped model with random bf16 weights drawn on the device (32 layers, hidden 4096, 32
// query / 8 KV heads of 128, MLP 14336, vocabulary 128256):
//   - decode step time (wall; the device's time from the plan upload to the last kernel; the host's time
//     to plan and launch it all) and tokens/s at 32K context, batch 1, 4 and 8, greedy on the device, every
//     sequence attending its whole KV (the pass has no retrieval yet). The KV is synthesized (random
//     values written straight into the pool), so these are step times, not accuracy; the traffic is a
//     real decode's: all weights plus every sequence's 32K tokens of K and V per step;
//   - the same at 1K context (weights dominate);
//   - prefill of 4096 tokens from token 0 in 512-token chunks, tokens/s.
// Bytes a step must read / step time is reported beside the HBM read rate gpu_bench measured in the same
// gpu-check run (--hbm-read-gbps). Prints one JSON object.
// Usage: gpu_decode_bench [--commit SHA] [--hbm-read-gbps X] [--only decode|prefill]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/gpu/cuda_forward.h"

namespace freekv {
namespace {

ModelConfig llama8b_shape() {
  ModelConfig c;
  c.arch = ModelArch::kLlama;
  c.arch_name = "LlamaForCausalLM";
  c.n_layers = 32;
  c.hidden = 4096;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate = 14336;
  c.vocab = 128256;
  c.max_positions = 131072;
  c.rms_eps = 1e-5;
  c.rope_theta = 500000;
  c.rope_scaling = RopeScaling{RopeScalingKind::kLlama3, 8.0, 1.0, 4.0, 8192};
  c.dtype = DType::kBF16;
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Median wall time of a decode step of `batch` sequences at `context` tokens, each step feeding back the
// ids it sampled. JSON of one row.
absl::StatusOr<std::string> decode_row(const DeviceWeights& w, int64_t batch, int64_t context, double hbm_gbps) {
  CudaForwardOptions o;
  o.slots = batch;
  o.max_tokens_per_slot = context + 64;
  o.page_tokens = 16;
  o.max_step_rows = 8;
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<CudaForwardPass> pass, CudaForwardPass::create(w, o));
  for (int64_t s = 0; s < batch; ++s) FREEKV_RETURN_IF_ERROR(pass->synthesize_kv(s, context, 7));
  std::vector<int32_t> ids(size_t(batch), 1);
  std::vector<double> times, device_ms, issue_ms;
  for (int step = 0; step < 23; ++step) {
    std::vector<CudaStepInput> inputs;
    for (int64_t s = 0; s < batch; ++s) inputs.push_back({s, &ids[size_t(s)], 1, false});
    const auto t0 = std::chrono::steady_clock::now();
    FREEKV_RETURN_IF_ERROR(pass->step_greedy(inputs, &ids));
    if (step >= 3) {  // three warm-up steps
      times.push_back(seconds_since(t0));
      device_ms.push_back(pass->last_timing().device_ms);
      issue_ms.push_back(pass->last_timing().host_issue_ms);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(device_ms.begin(), device_ms.end());
  std::sort(issue_ms.begin(), issue_ms.end());
  const double step_s = times[times.size() / 2];
  const ModelConfig& c = w.config();
  const double kv_bytes = double(batch) * double(context) * c.n_layers * c.n_kv_heads * c.head_dim * 2 *
                          double(dtype_size(o.kv_dtype));
  const double read_gbps = (double(w.bytes()) + kv_bytes) / step_s / 1e9;
  return absl::StrCat("{\"batch\": ", batch, ", \"context\": ", context, ", \"step_ms\": ", step_s * 1e3,
                      ", \"min_step_ms\": ", times.front() * 1e3,
                      ", \"device_ms\": ", device_ms[device_ms.size() / 2], ", \"host_issue_ms\": ",
                      issue_ms[issue_ms.size() / 2], ", \"tokens_per_s\": ", double(batch) / step_s,
                      ", \"weight_bytes\": ", w.bytes(), ", \"kv_bytes\": ", kv_bytes, ", \"read_gb_per_s\": ",
                      read_gbps, ", \"of_hbm_read\": ", hbm_gbps > 0 ? read_gbps / hbm_gbps : 0.0, "}");
}

absl::StatusOr<std::string> prefill_row(const DeviceWeights& w, int64_t tokens, int64_t chunk) {
  CudaForwardOptions o;
  o.slots = 1;
  o.max_tokens_per_slot = tokens;
  o.page_tokens = 16;
  o.max_step_rows = chunk;
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<CudaForwardPass> pass, CudaForwardPass::create(w, o));
  std::vector<int32_t> prompt(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) prompt[size_t(i)] = int32_t((i * 7919 + 13) % w.config().vocab);
  std::vector<int32_t> ids;
  // One untimed chunk warms cuBLAS up; then the whole prompt from token 0, timed.
  FREEKV_RETURN_IF_ERROR(pass->step_greedy({{0, prompt.data(), chunk, false}}, &ids));
  pass->reset(0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t at = 0; at < tokens; at += chunk) {
    FREEKV_RETURN_IF_ERROR(pass->step_greedy({{0, prompt.data() + at, std::min(chunk, tokens - at), false}}, &ids));
  }
  const double s = seconds_since(t0);
  return absl::StrCat("{\"tokens\": ", tokens, ", \"chunk\": ", chunk, ", \"seconds\": ", s,
                      ", \"tokens_per_s\": ", double(tokens) / s, "}");
}

int run(const std::string& commit, double hbm_gbps, const std::string& only) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "gpu_decode_bench: no CUDA device visible\n");
    return 77;
  }
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<DeviceWeights>> w = DeviceWeights::random(llama8b_shape(), 1);
  if (!w.ok()) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", w.status().ToString().c_str());
    return 1;
  }
  const double fill_s = seconds_since(t0);
  std::string decode = "[";
  for (const int64_t context : {int64_t(1024), int64_t(32768)}) {
    if (only == "prefill") break;
    for (const int64_t batch : {1, 4, 8}) {
      absl::StatusOr<std::string> row = decode_row(**w, batch, context, hbm_gbps);
      if (!row.ok()) {
        std::fprintf(stderr, "gpu_decode_bench: batch %lld at %lld: %s\n", (long long)batch, (long long)context,
                     row.status().ToString().c_str());
        return 1;
      }
      decode += (decode.size() > 1 ? ",\n   " : "") + *row;
    }
  }
  absl::StatusOr<std::string> prefill = only == "decode" ? "null" : prefill_row(**w, 4096, 512);
  if (!prefill.ok()) {
    std::fprintf(stderr, "gpu_decode_bench: prefill: %s\n", prefill.status().ToString().c_str());
    return 1;
  }
  std::printf("{\"bench\": \"gpu_decode\", \"device\": \"%s\", \"commit\": \"%s\", \"model\": \"Llama-3.1-8B shape, "
              "random bf16 weights\", \"kv\": \"synthesized (random), bf16, 16-token pages, every token attended\",\n"
              " \"weight_fill_s\": %.2f, \"hbm_read_gb_per_s\": %.1f,\n \"decode\": %s],\n \"prefill\": %s}\n",
              prop.name, commit.c_str(), fill_s, hbm_gbps, decode.c_str(), prefill->c_str());
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  std::string commit = "unknown";
  double hbm_gbps = 0;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--commit") == 0 && i + 1 < argc) {
      commit = argv[++i];
    } else if (std::strcmp(argv[i], "--hbm-read-gbps") == 0 && i + 1 < argc) {
      hbm_gbps = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: gpu_decode_bench [--commit SHA] [--hbm-read-gbps X] [--only decode|prefill]\n");
      return 2;
    }
  }
  return freekv::run(commit, hbm_gbps, only);
}
