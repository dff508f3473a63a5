// The forward pass on a GPU: the model's weights, every sequence's KV and the activations in device
// memory, each step one stream of kernels (kernels/cuda) and one upload of the step's plan, with a
// single host synchronisation at the end to hand back logits or sampled ids.
//
// What it does not do yet: retrieval. Every sequence attends its whole KV (the `full` policy) from
// device memory; FreeKV's selection, the offload to the kvstore and the recall of chunks are the CPU
// engine's (ForwardPass) and run on the GPU only as separate kernels (tests/cuda). Sequences live in
// fixed slots of the device KV pool (device_kv_plan.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "common/status.h"
#include "worker/gpu/device_kv_plan.h"
#include "worker/gpu/device_weights.h"

namespace freekv {

struct MatmulContext;

struct CudaForwardOptions {
  int64_t slots = 1;                 // sequences at once
  int64_t max_tokens_per_slot = 4096;
  int64_t page_tokens = 32;
  DType kv_dtype = DType::kBF16;
  int64_t max_step_rows = 512;       // tokens per step across all inputs (the prefill chunk)
  uint64_t memory_limit = 0;         // bytes of GPU memory the pass may hold beside the weights; 0 = what is free
};

// One input of a step: n_tokens ids appended to the sequence in `slot`.
struct CudaStepInput {
  int64_t slot = 0;
  const int32_t* tokens = nullptr;  // [n_tokens] host ids (< vocab)
  int64_t n_tokens = 0;
  bool all_logits = false;          // logits for every new token, or only the last
};

class CudaForwardPass {
 public:
  // Allocates the KV pool and activations on the current device. RESOURCE_EXHAUSTED, naming the
  // bytes wanted and available, when they exceed options.memory_limit or the device's free memory.
  static absl::StatusOr<std::unique_ptr<CudaForwardPass>> create(const DeviceWeights& weights,
                                                                 const CudaForwardOptions& options);
  CudaForwardPass(const CudaForwardPass&) = delete;
  CudaForwardPass& operator=(const CudaForwardPass&) = delete;
  ~CudaForwardPass();

  // Appends each input's tokens to its slot and writes logits into *logits: per input in order,
  // n_tokens rows (all_logits) or one, each [vocab] fp32. Errors (bad slot, tokens outside the
  // vocabulary, a slot or step too large, a CUDA failure) leave every slot's KV as it was.
  absl::Status step(const std::vector<CudaStepInput>& inputs, std::vector<float>* logits);
  // step() with greedy sampling on the device: ids[i] = argmax of input i's last logits row; only the
  // ids cross to the host.
  absl::Status step_greedy(const std::vector<CudaStepInput>& inputs, std::vector<int32_t>* ids);

  int64_t n_tokens(int64_t slot) const { return slot_tokens_[size_t(slot)]; }
  // Forgets the sequence in `slot` (its pages are reused by the next one).
  void reset(int64_t slot) { slot_tokens_[size_t(slot)] = 0; }
  // For step-time benchmarks: fills the whole KV pool with random values and sets `slot` to hold
  // n_tokens of them, as if prefilled (the output means nothing; the memory traffic is a real decode's).
  absl::Status synthesize_kv(int64_t slot, int64_t n_tokens, uint64_t seed);

  // The last successful step's time: on the device from its plan's upload to its last kernel, and on
  // the host from planning to having launched that kernel. When the two are close, the device waited
  // on the launches (the case for CUDA graphs).
  struct StepTiming {
    double device_ms = 0, host_issue_ms = 0;
  };
  StepTiming last_timing() const { return last_timing_; }

  const DeviceKvGeometry& kv_geometry() const { return geometry_; }
  size_t device_bytes() const { return device_bytes_; }  // KV pool, activations and plan buffers

 private:
  CudaForwardPass(const DeviceWeights& weights, const CudaForwardOptions& options);
  absl::Status allocate();
  // Everything up to the last rows' final-norm hidden states in xn_ ([out_rows, hidden]).
  absl::Status run_layers(const std::vector<CudaStepInput>& inputs, int64_t* out_rows);
  // After run_layers' work and the step's last kernels: waits for the stream and commits the inputs'
  // tokens to their slots.
  absl::Status finish_step(const std::vector<CudaStepInput>& inputs);

  const DeviceWeights& w_;
  CudaForwardOptions options_;
  DeviceKvGeometry geometry_;
  std::vector<int64_t> slot_tokens_;
  DeviceStepPlan plan_;
  cudaStream_t stream_ = nullptr;
  MatmulContext* matmul_ = nullptr;
  int multiprocessors_ = 1;
  size_t device_bytes_ = 0;
  std::vector<void*> allocations_;
  std::vector<uint8_t*> kv_layers_;  // [n_layers] device pools of chunks_per_layer chunks
  // Activations, [max_step_rows, width] fp32.
  float *x_ = nullptr, *xn_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr, *logits_ = nullptr;
  void* attention_workspace_ = nullptr;
  size_t attention_workspace_bytes_ = 0;
  int32_t* plan_device_ = nullptr;  // the step's int32 arrays, packed; see run_layers
  int32_t* plan_host_ = nullptr;    // pinned staging of the same
  size_t plan_capacity_ = 0;        // int32 elements of each
  int32_t* ids_device_ = nullptr;   // [max_step_rows] greedy ids
  int32_t* ids_host_ = nullptr;     // pinned [max_step_rows]: the download must not block the host
  float* logits_host_ = nullptr;    // pinned [max_step_rows, vocab]
  cudaEvent_t step_begin_ = nullptr, step_end_ = nullptr;
  std::chrono::steady_clock::time_point step_started_;
  StepTiming last_timing_;
};

}  // namespace freekv
