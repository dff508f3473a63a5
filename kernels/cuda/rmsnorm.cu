// RMSNorm on the GPU, the twin of kernels/cpu/norm_rope.cc rmsnorm: one block per row, a block-wide
// sum of squares in fp32, then the scaled write. The same op is the q/k norm with d = head_dim.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void rmsnorm_kernel(const float* x, const T* w, float eps, float* y, int64_t d) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t(blockIdx.x) * d;
  float* yr = y + int64_t(blockIdx.x) * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  const float inv = rsqrtf(block_reduce<false>(ss, scratch) / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * to_f32(w[i]);
}

}  // namespace

cudaError_t rmsnorm_cuda(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t n, int64_t d,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(w_dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_kernel<T><<<unsigned(n), kThreads, 0, stream>>>(x, static_cast<const T*>(w), eps, y, d);
    return cudaGetLastError();
  });
}

}  // namespace freekv
