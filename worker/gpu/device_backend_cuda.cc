#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/device.h"
#include "worker/gpu/cuda_step_backend.h"
#include "worker/gpu/device_backend.h"

namespace freekv {

namespace {

// The index of the visible CUDA device `device` names, or why there is none.
absl::StatusOr<int> visible_cuda_device(const DeviceOptions& device) {
  FREEKV_ASSIGN_OR_RETURN(const int index, cuda_device_index(device.name));
  const int count = cuda_device_count();
  if (index >= count) {
    return absl::FailedPreconditionError(absl::StrCat("--device ", device.name, ": this machine has ", count,
                                                      " visible CUDA device(s)", count == 0 ? " (or no driver)" : ""));
  }
  return index;
}

}  // namespace

absl::Status check_device(const DeviceOptions& device) {
  if (device.name == "cpu") return absl::OkStatus();
  return visible_cuda_device(device).status();
}

absl::StatusOr<std::unique_ptr<StepBackend>> make_device_backend(const ModelWeights& weights,
                                                                 const EngineOptions& options) {
  FREEKV_ASSIGN_OR_RETURN(const int index, visible_cuda_device(options.device));
  CudaForwardOptions o;
  o.slots = options.device.sequences;
  o.max_tokens_per_slot = options.device.tokens_per_sequence > 0
                              ? options.device.tokens_per_sequence
                              : std::min<int64_t>(weights.config.max_positions, 32768);
  o.page_tokens = options.page_tokens;
  o.kv_dtype = options.kv_dtype;
  // A scheduler step holds one prefill chunk beside a decode row of every other sequence.
  o.max_step_rows = options.prefill_chunk + options.device.sequences;
  o.memory_limit = options.device.memory_limit;
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<CudaStepBackend> backend, CudaStepBackend::create(weights, index, o));
  return std::unique_ptr<StepBackend>(std::move(backend));
}

}  // namespace freekv
