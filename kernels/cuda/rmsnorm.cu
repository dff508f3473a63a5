// RMSNorm on the GPU, the twin of kernels/cpu/norm_rope.cc rmsnorm: one block per row, a block-wide
// sum of squares in fp32, then the scaled write.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(const float* x, const __nv_bfloat16* w, float eps, float* y, int64_t d) {
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  __shared__ float partial[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    ss = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (threadIdx.x == 0) partial[0] = ss;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * __bfloat162float(w[i]);
}

}  // namespace

cudaError_t rmsnorm_cuda(const float* x, const uint16_t* w_bf16, float eps, float* y, int64_t n, int64_t d,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  rmsnorm_kernel<<<unsigned(n), kThreads, 0, stream>>>(x, reinterpret_cast<const __nv_bfloat16*>(w_bf16), eps, y, d);
  return cudaGetLastError();
}

}  // namespace freekv
