// The factory the binaries hand to the engine (EngineOptions::make_device_backend): the step backend
// for EngineOptions::device, "cuda:N" where this build has CUDA. Without CUDA it refuses, saying so.
#pragma once

#include <memory>

#include "worker/engine/generate.h"

namespace freekv {

absl::StatusOr<std::unique_ptr<StepBackend>> make_device_backend(const ModelWeights& weights,
                                                                 const EngineOptions& options);

}  // namespace freekv
