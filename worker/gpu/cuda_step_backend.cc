#include "worker/gpu/cuda_step_backend.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace freekv {

CudaStepBackend::CudaStepBackend(int device, std::string name, std::unique_ptr<DeviceWeights> weights,
                                 std::unique_ptr<CudaForwardPass> pass, int64_t slots)
    : device_(device), name_(std::move(name)), weights_(std::move(weights)), pass_(std::move(pass)), slots_(slots) {}

absl::StatusOr<std::unique_ptr<CudaStepBackend>> CudaStepBackend::create(const ModelWeights& weights, int device,
                                                                         const CudaForwardOptions& options) {
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), absl::StrCat("selecting CUDA device ", device).c_str()));
  cudaDeviceProp prop;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  size_t free_bytes = 0, total_bytes = 0;
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  const size_t weight_bytes = device_weight_bytes(weights.config);
  if (weight_bytes > free_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("GPU memory: the model's weights need ", weight_bytes,
                                                     " bytes; cuda:", device, " (", prop.name, ") has ", free_bytes,
                                                     " free of ", total_bytes));
  }
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<DeviceWeights> w, DeviceWeights::upload(weights));
  FREEKV_ASSIGN_OR_RETURN(std::unique_ptr<CudaForwardPass> pass, CudaForwardPass::create(*w, options));
  return std::unique_ptr<CudaStepBackend>(new CudaStepBackend(device, absl::StrCat("cuda:", device, " (", prop.name, ")"),
                                                              std::move(w), std::move(pass), options.slots));
}

absl::Status CudaStepBackend::step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                                   std::vector<absl::Status>* failed) {
  // The CUDA device is a per-thread setting, and the engine may step from another thread than the one
  // that made the backend (the scheduler's).
  FREEKV_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device_), "cudaSetDevice"));
  const int64_t vocab = weights_->config().vocab, max_tokens = pass_->kv_geometry().max_tokens();
  failed->assign(inputs.size(), absl::OkStatus());
  run_.clear();
  run_index_.clear();
  int64_t out_rows = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const StepInput& in = inputs[i];
    out_rows += in.all_logits ? in.n_tokens : 1;
    absl::StatusOr<int64_t> slot = slots_.slot_for(in.seq);
    if (!slot.ok()) {
      (*failed)[i] = slot.status();
      continue;
    }
    if (pass_->n_tokens(*slot) + in.n_tokens > max_tokens) {
      (*failed)[i] = absl::ResourceExhaustedError(
          absl::StrCat("the sequence would hold ", pass_->n_tokens(*slot) + in.n_tokens, " tokens; the GPU KV pool gives ",
                       "a sequence ", max_tokens, " (start with a larger --gpu-tokens)"));
      continue;
    }
    run_.push_back(CudaStepInput{*slot, in.tokens, in.n_tokens, in.all_logits});
    run_index_.push_back(i);
  }
  logits->assign(size_t(out_rows * vocab), 0.f);
  if (run_.empty()) return absl::OkStatus();
  FREEKV_RETURN_IF_ERROR(pass_->step(run_, &device_logits_));
  // Each stepped input's rows go where the step's row order puts them.
  std::vector<int64_t> first_row(inputs.size() + 1, 0);
  for (size_t i = 0; i < inputs.size(); ++i) first_row[i + 1] = first_row[i] + (inputs[i].all_logits ? inputs[i].n_tokens : 1);
  int64_t from = 0;
  for (size_t k = 0; k < run_.size(); ++k) {
    const int64_t rows = run_[k].all_logits ? run_[k].n_tokens : 1;
    std::memcpy(logits->data() + first_row[run_index_[k]] * vocab, device_logits_.data() + from * vocab,
                size_t(rows * vocab) * sizeof(float));
    from += rows;
  }
  return absl::OkStatus();
}

void CudaStepBackend::release(const Sequence* seq) {
  const int64_t slot = slots_.release(seq);
  if (slot >= 0) pass_->reset(slot);
}

}  // namespace freekv
