// Paged attention on the GPU, the twin of kernels/cpu/attention.cc attention_paged: one kernel for
// decode (one query per sequence, KV split into ranges so that long contexts fill the device) and
// chunked prefill (a query per token, causal through AttentionQueries::visible).
//
// A block takes one (query, KV head) pair and one split of that head's chunks. Its warps walk the
// tokens (one token per warp at a time, each lane holding head_dim/32 dimensions), and every warp keeps
// the online-softmax state of the whole query group, so a KV head's keys and values are read once per
// group. The warps' states are merged in shared memory into one partial state per (query, head,
// split); a second kernel merges the splits.
#include <algorithm>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxGroup = 8;  // query heads per KV head (GQA group) the kernel is built for
constexpr int kUnroll = 2;    // tokens per warp in flight, to hide load latency

// Partial state layout in the workspace: m and l [n_q, n_heads, n_splits], acc [n_q, n_heads,
// n_splits, head_dim].
struct Partials {
  float* m;
  float* l;
  float* acc;
};

Partials partials(void* workspace, int64_t n_q, int64_t n_heads, int64_t head_dim, int64_t n_splits) {
  float* base = static_cast<float*>(workspace);
  const int64_t n = n_q * n_heads * n_splits;
  return {base, base + n, base + 2 * n};
}

// A lane's kLanes consecutive elements in one or two vector loads (4 to 32 bytes; rows of a chunk are
// head_dim elements, so a lane's share is aligned to its size).
template <typename T, int kLanes>
__device__ __forceinline__ void load_lanes(const T* p, float* out) {
  constexpr int kBytes = kLanes * int(sizeof(T));
  alignas(16) T e[kLanes];
  if constexpr (kBytes == 4) {
    *reinterpret_cast<uint32_t*>(e) = *reinterpret_cast<const uint32_t*>(p);
  } else if constexpr (kBytes == 8) {
    *reinterpret_cast<uint2*>(e) = *reinterpret_cast<const uint2*>(p);
  } else {
#pragma unroll
    for (int w = 0; w < kBytes / 16; ++w) reinterpret_cast<uint4*>(e)[w] = reinterpret_cast<const uint4*>(p)[w];
  }
#pragma unroll
  for (int j = 0; j < kLanes; ++j) out[j] = to_f32(e[j]);
}

// kLanes = head_dim / 32 dimensions per lane; kGroup ≥ the query group (1, 2, 4 or 8): the group's
// queries and states live in registers, so the instance is sized to the model's group.
template <typename T, int kLanes, int kGroup>
__global__ void __launch_bounds__(kWarps * 32)
    attention_split_kernel(AttentionQueries queries, PagedKvCuda kv, float scale, int64_t chunks_per_split,
                           Partials out) {
  constexpr int kHeadDim = kLanes * 32;
  const int64_t n_kv = kv.n_kv_heads, pt = kv.page_tokens;
  const int64_t qi = blockIdx.x / n_kv, h = blockIdx.x % n_kv, split = blockIdx.y, n_splits = gridDim.y;
  const int group = int(queries.n_heads / n_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(queries.seq[qi]) * n_kv + h;
  const int64_t first = kv.indptr[row];
  const int64_t n_tokens = min(paged_row_tokens(kv.indptr[row + 1] - first, kv.last_len[row], pt),
                               int64_t(queries.visible[qi]));
  const int64_t t_begin = split * chunks_per_split * pt;
  const int64_t t_end = min(n_tokens, t_begin + chunks_per_split * pt);
  const T* pool = static_cast<const T*>(kv.pool);

  float q[kGroup][kLanes], acc[kGroup][kLanes], m[kGroup], l[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < kLanes; ++j) {
      acc[g][j] = 0.f;
      q[g][j] = g < group ? queries.q[(qi * queries.n_heads + h * group + g) * kHeadDim + lane * kLanes + j] * scale
                          : 0.f;
    }
  }

  for (int64_t t0 = t_begin + warp; t0 < t_end; t0 += kWarps * kUnroll) {
    float k[kUnroll][kLanes], v[kUnroll][kLanes];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t t = t0 + u * kWarps;
      if (t >= t_end) break;
      const int64_t chunk = kv.indices[first + t / pt];
      load_lanes<T, kLanes>(pool + paged_elem_offset(chunk, 0, t % pt, lane * kLanes, pt, kHeadDim), k[u]);
      load_lanes<T, kLanes>(pool + paged_elem_offset(chunk, 1, t % pt, lane * kLanes, pt, kHeadDim), v[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (t0 + u * kWarps >= t_end) break;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g >= group) break;
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < kLanes; ++j) s += q[g][j] * k[u][j];
        s = warp_sum(s);
        const float m_new = fmaxf(m[g], s);
        const float decay = __expf(m[g] - m_new);  // m = −inf on the first token: exp(−inf) = 0
        const float p = __expf(s - m_new);
        l[g] = l[g] * decay + p;
#pragma unroll
        for (int j = 0; j < kLanes; ++j) acc[g][j] = acc[g][j] * decay + p * v[u][j];
        m[g] = m_new;
      }
    }
  }

  // Merge the warps' states for each query head of the group.
  __shared__ float warp_m[kWarps][kGroup], warp_l[kWarps][kGroup];
  __shared__ float warp_acc[kWarps][kGroup][kHeadDim];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g >= group) break;
    if (lane == 0) {
      warp_m[warp][g] = m[g];
      warp_l[warp][g] = l[g];
    }
#pragma unroll
    for (int j = 0; j < kLanes; ++j) warp_acc[warp][g][lane * kLanes + j] = acc[g][j];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < group * kHeadDim; e += blockDim.x) {
    const int g = e / kHeadDim, d = e % kHeadDim;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, warp_m[w][g]);
    float sum = 0.f, a = 0.f;
    if (mx > -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        const float f = __expf(warp_m[w][g] - mx);
        sum += warp_l[w][g] * f;
        a += warp_acc[w][g][d] * f;
      }
    }
    const int64_t slot = (qi * queries.n_heads + h * group + g) * n_splits + split;
    out.acc[slot * kHeadDim + d] = a;
    if (d == 0) {
      out.m[slot] = mx;
      out.l[slot] = sum;
    }
  }
}

// One block per (query, head), one thread per dimension: merge the splits and normalise.
__global__ void attention_merge_kernel(Partials parts, int64_t n_splits, int64_t head_dim, float* out) {
  const int64_t qh = blockIdx.x;
  const float* m = parts.m + qh * n_splits;
  const float* l = parts.l + qh * n_splits;
  float mx = -INFINITY;
  for (int64_t s = 0; s < n_splits; ++s) mx = fmaxf(mx, m[s]);
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.f, a = 0.f;
    if (mx > -INFINITY) {
      for (int64_t s = 0; s < n_splits; ++s) {
        const float f = __expf(m[s] - mx);
        sum += l[s] * f;
        a += parts.acc[(qh * n_splits + s) * head_dim + d] * f;
      }
    }
    out[qh * head_dim + d] = sum > 0.f ? a / sum : 0.f;
  }
}

template <typename T, int kLanes>
cudaError_t launch_split_group(const AttentionQueries& queries, const PagedKvCuda& kv, float scale, dim3 grid,
                               int64_t chunks_per_split, Partials parts, cudaStream_t stream) {
  const int64_t group = queries.n_heads / kv.n_kv_heads;
  if (group <= 1) {
    attention_split_kernel<T, kLanes, 1><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else if (group <= 2) {
    attention_split_kernel<T, kLanes, 2><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else if (group <= 4) {
    attention_split_kernel<T, kLanes, 4><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else {
    attention_split_kernel<T, kLanes, 8><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_split(const AttentionQueries& queries, const PagedKvCuda& kv, float scale, dim3 grid,
                         int64_t chunks_per_split, Partials parts, cudaStream_t stream) {
  switch (kv.head_dim) {
    case 64: return launch_split_group<T, 2>(queries, kv, scale, grid, chunks_per_split, parts, stream);
    case 128: return launch_split_group<T, 4>(queries, kv, scale, grid, chunks_per_split, parts, stream);
    case 256: return launch_split_group<T, 8>(queries, kv, scale, grid, chunks_per_split, parts, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

AttentionSplits attention_splits(int64_t n_query_rows, int64_t max_chunks, int multiprocessors) {
  constexpr int64_t kBlocksPerMultiprocessor = 4, kMinChunks = 4;
  const int64_t wanted = std::max<int64_t>(1, kBlocksPerMultiprocessor * multiprocessors / std::max<int64_t>(1, n_query_rows));
  AttentionSplits s;
  s.chunks_per_split = std::max<int64_t>(kMinChunks, (max_chunks + wanted - 1) / wanted);
  s.n_splits = std::max<int64_t>(1, (max_chunks + s.chunks_per_split - 1) / s.chunks_per_split);
  return s;
}

size_t attention_workspace_bytes(int64_t n_q, int64_t n_heads, int64_t head_dim, int64_t n_splits) {
  return size_t(n_q * n_heads * n_splits * (2 + head_dim)) * sizeof(float);
}

cudaError_t attention_paged_cuda(const AttentionQueries& queries, const PagedKvCuda& kv, float scale,
                                 int64_t n_splits, int64_t chunks_per_split, void* workspace, float* out,
                                 cudaStream_t stream) {
  if (queries.n_q == 0) return cudaSuccess;
  if (kv.n_kv_heads <= 0 || queries.n_heads % kv.n_kv_heads != 0 || queries.n_heads / kv.n_kv_heads > kMaxGroup ||
      n_splits < 1 || chunks_per_split < 1) {
    return cudaErrorInvalidValue;
  }
  const Partials parts = partials(workspace, queries.n_q, queries.n_heads, kv.head_dim, n_splits);
  const dim3 grid(unsigned(queries.n_q * kv.n_kv_heads), unsigned(n_splits));
  cudaError_t e = dispatch_dtype(kv.dtype, [&](auto tag) {
    return launch_split<decltype(tag)>(queries, kv, scale, grid, chunks_per_split, parts, stream);
  });
  if (e != cudaSuccess) return e;
  attention_merge_kernel<<<unsigned(queries.n_q * queries.n_heads), unsigned(kv.head_dim), 0, stream>>>(
      parts, n_splits, kv.head_dim, out);
  return cudaGetLastError();
}

}  // namespace freekv
