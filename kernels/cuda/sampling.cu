// Greedy sampling on the GPU: the twin of the greedy path of worker/engine/sampler.cc (argmax, ties to
// the lower id), one block per row.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"

namespace freekv {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ bool better(float v, int32_t i, float best_v, int32_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__global__ void argmax_kernel(const float* logits, int64_t vocab, int32_t* ids) {
  __shared__ float vals[kThreads / 32];
  __shared__ int32_t idxs[kThreads / 32];
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  float best_v = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (better(row[i], int32_t(i), best_v, best_i)) {
      best_v = row[i];
      best_i = int32_t(i);
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best_v, off);
    const int32_t i = __shfl_xor_sync(0xffffffffu, best_i, off);
    if (better(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
  if (threadIdx.x % 32 == 0) {
    vals[threadIdx.x / 32] = best_v;
    idxs[threadIdx.x / 32] = best_i;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kThreads / 32; ++w) {
    if (better(vals[w], idxs[w], best_v, best_i)) {
      best_v = vals[w];
      best_i = idxs[w];
    }
  }
  ids[blockIdx.x] = best_i == INT32_MAX ? 0 : best_i;
}

}  // namespace

cudaError_t argmax_cuda(const float* logits, int64_t n, int64_t vocab, int32_t* ids, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  argmax_kernel<<<unsigned(n), kThreads, 0, stream>>>(logits, vocab, ids);
  return cudaGetLastError();
}

}  // namespace freekv
