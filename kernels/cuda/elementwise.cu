// Embedding, RoPE, SwiGLU and additions on the GPU: twins of kernels/cpu/elementwise.cc and
// norm_rope.cc, with the per-element arithmetic from kernels/shared_math.h.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void embedding_kernel(const T* table, const int32_t* ids, int64_t d, float* out) {
  const T* row = table + int64_t(ids[blockIdx.x]) * d;
  float* o = out + int64_t(blockIdx.x) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = to_f32(row[i]);
}

// One block per token: the pair angles once, then every head's pairs.
__global__ void rope_kernel(float* x, const int32_t* positions, const float* inv_freq, int64_t n_heads,
                            int64_t head_dim) {
  const int64_t half = head_dim / 2;
  float* xt = x + int64_t(blockIdx.x) * n_heads * head_dim;
  for (int64_t p = threadIdx.x; p < n_heads * half; p += blockDim.x) {
    const int64_t h = p / half, i = p % half;
    double s, c;
    sincos(rope_angle(positions[blockIdx.x], inv_freq[i]), &s, &c);
    float* v = xt + h * head_dim;
    rope_rotate(v[i], v[i + half], float(c), float(s));
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = swiglu_value(gate[i], up[i]);
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t m) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * m) y[i] += bias[i % m];
}

}  // namespace

cudaError_t embedding_cuda(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t d, float* out,
                           cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<unsigned(n), kThreads, 0, stream>>>(static_cast<const T*>(table), ids, d, out);
    return cudaGetLastError();
  });
}

cudaError_t rope_apply_cuda(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t n_heads,
                            int64_t head_dim, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  rope_kernel<<<unsigned(n), kThreads, 0, stream>>>(x, positions, inv_freq, n_heads, head_dim);
  return cudaGetLastError();
}

cudaError_t swiglu_cuda(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  swiglu_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t add_inplace_cuda(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  add_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(y, x, n);
  return cudaGetLastError();
}

cudaError_t add_bias_cuda(float* y, const float* bias, int64_t rows, int64_t m, cudaStream_t stream) {
  if (rows * m == 0) return cudaSuccess;
  add_bias_kernel<<<blocks_for(rows * m, kThreads), kThreads, 0, stream>>>(y, bias, rows, m);
  return cudaGetLastError();
}

}  // namespace freekv
