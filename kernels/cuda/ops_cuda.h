// CUDA twins of kernels/ops.h. Launchers return the CUDA error instead of aborting; every pointer is
// device memory. Validated against the CPU ops by tests/cuda (which skip, exit 77, without a GPU).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace freekv {

// y[n, d] = x[n, d] / sqrt(mean(x²) + eps) * w[d]; x, y fp32; w bf16 bits.
cudaError_t rmsnorm_cuda(const float* x, const uint16_t* w_bf16, float eps, float* y, int64_t n, int64_t d,
                         cudaStream_t stream);

}  // namespace freekv
