// A CUDA runtime error as an absl::Status for the host code that calls CUDA directly (the kvstore's
// push, the worker's device staging): UNAVAILABLE, naming the call and CUDA's error.
#pragma once

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace freekv {

inline absl::Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

}  // namespace freekv
