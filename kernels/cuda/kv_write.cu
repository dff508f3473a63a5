// Writing a step's new K/V rows into the paged pool (the layout of kernels/shared_math.h), converted
// from the projections' fp32 to the pool's storage type, and filling device memory with reproducible
// values (random weights and synthesized KV for benchmarks).
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

constexpr int kThreads = 128;

// One block per (token, KV head): its K row and V row.
template <typename T>
__global__ void write_kv_kernel(T* pool, const float* k, const float* v, const int32_t* chunk, const int32_t* token,
                                int64_t n_kv_heads, int64_t page_tokens, int64_t head_dim) {
  const int64_t row = blockIdx.x, t = row / n_kv_heads;
  const float* kr = k + row * head_dim;
  const float* vr = v + row * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    pool[paged_elem_offset(chunk[row], 0, token[t], d, page_tokens, head_dim)] = from_f32<T>(kr[d]);
    pool[paged_elem_offset(chunk[row], 1, token[t], d, page_tokens, head_dim)] = from_f32<T>(vr[d]);
  }
}

// splitmix64: a counter-based generator, so element i's value depends only on (seed, i).
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_uniform_kernel(T* dst, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float u = float(mix64(seed ^ (uint64_t(i) * 0xd1b54a32d192ed03ull)) >> 40) * (1.f / 16777216.f);
    dst[i] = from_f32<T>(lo + (hi - lo) * u);
  }
}

}  // namespace

cudaError_t write_kv_cuda(void* pool, DType dtype, const float* k, const float* v, const int32_t* chunk,
                          const int32_t* token, int64_t n, int64_t n_kv_heads, int64_t page_tokens, int64_t head_dim,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    write_kv_kernel<T><<<unsigned(n * n_kv_heads), kThreads, 0, stream>>>(static_cast<T*>(pool), k, v, chunk, token,
                                                                          n_kv_heads, page_tokens, head_dim);
    return cudaGetLastError();
  });
}

cudaError_t fill_uniform_cuda(void* dst, DType dtype, int64_t n, uint64_t seed, float lo, float hi,
                              cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned blocks = unsigned(std::min<int64_t>(int64_t(blocks_for(n, 256)), 65536));
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    fill_uniform_kernel<T><<<blocks, 256, 0, stream>>>(static_cast<T*>(dst), n, seed, lo, hi);
    return cudaGetLastError();
  });
}

}  // namespace freekv
