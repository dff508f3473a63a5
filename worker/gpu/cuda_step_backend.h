// The GPU step backend (worker/engine/step_backend.h) over CudaForwardPass: the model's weights and
// every sequence's KV on one CUDA device, a sequence holding one KV region (SequenceSlots) from its
// first step until the engine releases it. Every sequence attends its whole KV (no retrieval yet).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/engine/step_backend.h"
#include "worker/engine/weights.h"
#include "worker/gpu/cuda_forward.h"
#include "worker/gpu/device_weights.h"
#include "worker/gpu/sequence_slots.h"

namespace freekv {

class CudaStepBackend : public StepBackend {
 public:
  // Uploads the weights to CUDA device `device` and allocates the KV pool there; errors name the
  // bytes when they do not fit.
  static absl::StatusOr<std::unique_ptr<CudaStepBackend>> create(const ModelWeights& weights, int device,
                                                                 const CudaForwardOptions& options);

  // An input whose sequence finds no free slot, or would outgrow its slot, drops out with
  // RESOURCE_EXHAUSTED; the others step.
  absl::Status step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                    std::vector<absl::Status>* failed) override;
  void release(const Sequence* seq) override;
  int64_t max_sequences() const override { return pass_->kv_geometry().slots; }
  std::string device() const override { return name_; }

 private:
  CudaStepBackend(int device, std::string name, std::unique_ptr<DeviceWeights> weights,
                  std::unique_ptr<CudaForwardPass> pass, int64_t slots);

  int device_;
  std::string name_;
  std::unique_ptr<DeviceWeights> weights_;
  std::unique_ptr<CudaForwardPass> pass_;
  SequenceSlots slots_;
  std::vector<CudaStepInput> run_;     // the step's inputs that have a slot
  std::vector<size_t> run_index_;      // their index among the step's inputs
  std::vector<float> device_logits_;   // the pass's logits rows for run_
};

}  // namespace freekv
