// The factory the binaries hand to the engine (EngineOptions::make_device_backend): the step backend
// for EngineOptions::device, "cuda:N" where this build has CUDA. Without CUDA it refuses, saying so.
#pragma once

#include <memory>

#include "worker/engine/generate.h"

namespace freekv {

absl::StatusOr<std::unique_ptr<StepBackend>> make_device_backend(const ModelWeights& weights,
                                                                 const EngineOptions& options);

// Whether the device is there to use: OK for the CPU; for cuda:N, FAILED_PRECONDITION when no such CUDA
// device is visible, UNAVAILABLE in a build without CUDA (--check-config).
absl::Status check_device(const DeviceOptions& device);

// The CUDA device index of a --device name: "cuda:N" → N; "cpu" and anything else INVALID_ARGUMENT
// naming what is accepted.
absl::StatusOr<int> cuda_device_index(const std::string& device_name);

// The --device, --gpu-sequences, --gpu-tokens and --gpu-memory flags (the CLI's and the worker's) as
// DeviceOptions, or INVALID_ARGUMENT naming the flag.
absl::StatusOr<DeviceOptions> device_options(const std::string& device, int64_t gpu_sequences, int64_t gpu_tokens,
                                             const std::string& gpu_memory);

}  // namespace freekv
