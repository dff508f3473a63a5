// Paged attention on the GPU, the twin of kernels/cpu/attention.cc attention_paged: one kernel for
// decode (one query per sequence, KV split into ranges so that long contexts fill the device) and
// chunked prefill (a query per token, causal through AttentionQueries::visible).
//
// A block takes one (query, KV head) pair and one split of that head's chunks. A token's key row is
// read by a "sub-warp" of lanes with 16-byte loads (16 lanes for head_dim 128 in 16-bit types, so a
// warp reads two tokens per load), and each sub-warp keeps its own online-softmax state for the whole
// query group, so a KV head's keys and values are read once per group. Loads of several tokens are
// issued before any arithmetic (memory-level parallelism is what decode attention is short of), and
// the softmax state is rescaled once per batch of tokens. The sub-warps' states are merged in shared
// memory into one partial state per (query, head, split); a second kernel merges the splits.
#include <algorithm>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxGroup = 8;  // query heads per KV head (GQA group) the kernel is built for
constexpr int kIndexWindow = 256;  // chunk ids staged in shared memory at a time

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

// Sixteen bytes of T as fp32.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& raw, float* out) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < int(16 / sizeof(T)); ++j) out[j] = to_f32(e[j]);
}

// The shape of the work of one lane, from the element type and head_dim.
template <typename T, int kHeadDim>
struct LaneShape {
  static constexpr int kVec = 16 / int(sizeof(T));                                   // elements per load
  static constexpr int kLanesPerToken = kHeadDim / kVec < 32 ? kHeadDim / kVec : 32;  // a sub-warp
  static constexpr int kLoads = kHeadDim / (kLanesPerToken * kVec);                  // loads per row
  static constexpr int kDims = kLoads * kVec;                                        // dims per lane
  static constexpr int kSubs = 32 / kLanesPerToken;                                  // tokens per warp load
  // Dimension of element e of load l of lane j in its sub-warp: loads are interleaved across the
  // sub-warp so that each load instruction reads one contiguous stretch of the row.
  static __device__ __forceinline__ int dim(int l, int j, int e) { return (l * kLanesPerToken + j) * kVec + e; }
};

// kGroup ≥ the query group (1, 2, 4 or 8): the group's queries and states live in registers, so the
// instance is sized to the model's group; kUnroll tokens per sub-warp are loaded before the arithmetic.
template <typename T, int kHeadDim, int kGroup>
__global__ void __launch_bounds__(kWarps * 32)
    attention_split_kernel(AttentionQueries queries, PagedKvCuda kv, float scale, int64_t chunks_per_split,
                           Partials out) {
  using S = LaneShape<T, kHeadDim>;
  constexpr int kUnroll = kGroup >= 8 ? 2 : 4;
  const int64_t n_kv = kv.n_kv_heads, pt = kv.page_tokens;
  const int64_t qi = blockIdx.x / n_kv, h = blockIdx.x % n_kv, split = blockIdx.y, n_splits = gridDim.y;
  const int group = int(queries.n_heads / n_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / S::kLanesPerToken, j = lane % S::kLanesPerToken;
  const int64_t row = int64_t(queries.seq[qi]) * n_kv + h;
  const int64_t first = kv.indptr[row];
  const int64_t n_tokens = min(paged_row_tokens(kv.indptr[row + 1] - first, kv.last_len[row], pt),
                               int64_t(queries.visible[qi]));
  const int64_t t_begin = split * chunks_per_split * pt;
  const int64_t t_end = min(n_tokens, t_begin + chunks_per_split * pt);
  const T* pool = static_cast<const T*>(kv.pool);

  // The group's queries (scaled) live in shared memory, not registers: registers are what limits how
  // many warps a multiprocessor keeps in flight here, and that is what this kernel is short of.
  __shared__ float q_shared[kGroup][kHeadDim];
  for (int i = threadIdx.x; i < kGroup * kHeadDim; i += blockDim.x) {
    q_shared[i / kHeadDim][i % kHeadDim] =
        i / kHeadDim < group ? queries.q[(qi * queries.n_heads + h * group) * kHeadDim + i] * scale : 0.f;
  }
  float acc[kGroup][S::kDims], m[kGroup], l[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int d = 0; d < S::kDims; ++d) acc[g][d] = 0.f;
  }

  constexpr int kStride = kWarps * kUnroll * S::kSubs;  // tokens per block iteration
  // The split's chunk ids go to shared memory a window at a time, so that a token's load does not
  // wait on a dependent global load of its chunk id first.
  __shared__ int32_t window_chunks[kIndexWindow];
  for (int64_t w_begin = t_begin; w_begin < t_end; w_begin += kIndexWindow * pt) {
    const int64_t w_end = min(t_end, w_begin + kIndexWindow * pt);
    __syncthreads();  // the previous window's ids are no longer read
    for (int64_t i = threadIdx.x; i < (w_end - w_begin + pt - 1) / pt; i += blockDim.x) {
      window_chunks[i] = kv.indices[first + w_begin / pt + i];
    }
    __syncthreads();
    for (int64_t base = w_begin + int64_t(warp) * kUnroll * S::kSubs; base < w_end; base += kStride) {
      uint4 k_raw[kUnroll][S::kLoads], v_raw[kUnroll][S::kLoads];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t t = base + u * S::kSubs + sub;
#pragma unroll
        for (int ld = 0; ld < S::kLoads; ++ld) k_raw[u][ld] = v_raw[u][ld] = make_uint4(0, 0, 0, 0);
        if (t >= w_end) continue;  // zeros, not garbage: its weight is 0, and 0 · NaN would not be
        const T* k_row = pool + paged_elem_offset(window_chunks[(t - w_begin) / pt], 0, t % pt, 0, pt, kHeadDim);
        const T* v_row = k_row + pt * kHeadDim;  // the V half follows the K half in a chunk
#pragma unroll
        for (int ld = 0; ld < S::kLoads; ++ld) {
          k_raw[u][ld] = *reinterpret_cast<const uint4*>(k_row + S::dim(ld, j, 0));
          v_raw[u][ld] = *reinterpret_cast<const uint4*>(v_row + S::dim(ld, j, 0));
        }
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g >= group) break;
        float s[kUnroll];
        float m_new = m[g];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          float dot = 0.f;
#pragma unroll
          for (int ld = 0; ld < S::kLoads; ++ld) {
            float k[S::kVec];  // converted at each use: registers, not conversions, bound occupancy here
            unpack16<T>(k_raw[u][ld], k);
#pragma unroll
            for (int e = 0; e < S::kVec; ++e) dot += q_shared[g][S::dim(ld, j, e)] * k[e];
          }
#pragma unroll
          for (int off = S::kLanesPerToken / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
          s[u] = base + u * S::kSubs + sub < w_end ? dot : -INFINITY;
          m_new = fmaxf(m_new, s[u]);
        }
        if (m_new == -INFINITY) continue;  // this sub-warp has seen no token yet
        const float decay = __expf(m[g] - m_new);
        l[g] *= decay;
#pragma unroll
        for (int d = 0; d < S::kDims; ++d) acc[g][d] *= decay;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const float p = __expf(s[u] - m_new);  // 0 for a token past the end
          l[g] += p;
#pragma unroll
          for (int ld = 0; ld < S::kLoads; ++ld) {
            float v[S::kVec];
            unpack16<T>(v_raw[u][ld], v);
#pragma unroll
            for (int e = 0; e < S::kVec; ++e) acc[g][ld * S::kVec + e] += p * v[e];
          }
        }
        m[g] = m_new;
      }
    }
  }

  // Merge the sub-warps' states for each query head of the group.
  constexpr int kStates = kWarps * S::kSubs;
  __shared__ float state_m[kStates][kGroup], state_l[kStates][kGroup];
  __shared__ float state_acc[kStates][kGroup][kHeadDim];
  const int me = warp * S::kSubs + sub;
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g >= group) break;
    if (j == 0) {
      state_m[me][g] = m[g];
      state_l[me][g] = l[g];
    }
#pragma unroll
    for (int ld = 0; ld < S::kLoads; ++ld) {
#pragma unroll
      for (int e = 0; e < S::kVec; ++e) state_acc[me][g][S::dim(ld, j, e)] = acc[g][ld * S::kVec + e];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < group * kHeadDim; e += blockDim.x) {
    const int g = e / kHeadDim, d = e % kHeadDim;
    float mx = -INFINITY;
    for (int w = 0; w < kStates; ++w) mx = fmaxf(mx, state_m[w][g]);
    float sum = 0.f, a = 0.f;
    if (mx > -INFINITY) {
      for (int w = 0; w < kStates; ++w) {
        const float f = __expf(state_m[w][g] - mx);
        sum += state_l[w][g] * f;
        a += state_acc[w][g][d] * f;
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

// One block per (query, head): merge the splits and normalise. kMergeThreads / head_dim groups of
// head_dim threads take every n-th split each (many splits must not become one long serial loop),
// then the groups' sums meet in shared memory.
constexpr int kMergeThreads = 256;

__global__ void __launch_bounds__(kMergeThreads)
    attention_merge_kernel(Partials parts, int64_t n_splits, int64_t head_dim, float* out) {
  __shared__ float part_acc[kMergeThreads], part_sum[kMergeThreads];
  __shared__ float scratch[32];
  const int64_t qh = blockIdx.x;
  const float* m = parts.m + qh * n_splits;
  const float* l = parts.l + qh * n_splits;
  float local = -INFINITY;
  for (int64_t s = threadIdx.x; s < n_splits; s += blockDim.x) local = fmaxf(local, m[s]);
  const float mx = block_reduce<true>(local, scratch);
  const int64_t groups = kMergeThreads / head_dim, grp = threadIdx.x / head_dim, d = threadIdx.x % head_dim;
  float sum = 0.f, a = 0.f;
  if (grp < groups && mx > -INFINITY) {
#pragma unroll 4
    for (int64_t s = grp; s < n_splits; s += groups) {
      const float f = __expf(m[s] - mx);
      sum += l[s] * f;
      a += parts.acc[(qh * n_splits + s) * head_dim + d] * f;
    }
  }
  part_acc[threadIdx.x] = a;
  part_sum[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x >= head_dim) return;
  for (int64_t g = 1; g < groups; ++g) {
    a += part_acc[g * head_dim + d];
    sum += part_sum[g * head_dim + d];
  }
  out[qh * head_dim + d] = sum > 0.f ? a / sum : 0.f;
}

template <typename T, int kHeadDim>
cudaError_t launch_split_group(const AttentionQueries& queries, const PagedKvCuda& kv, float scale, dim3 grid,
                               int64_t chunks_per_split, Partials parts, cudaStream_t stream) {
  const int64_t group = queries.n_heads / kv.n_kv_heads;
  if (group <= 1) {
    attention_split_kernel<T, kHeadDim, 1><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else if (group <= 2) {
    attention_split_kernel<T, kHeadDim, 2><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else if (group <= 4) {
    attention_split_kernel<T, kHeadDim, 4><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  } else {
    attention_split_kernel<T, kHeadDim, 8><<<grid, kWarps * 32, 0, stream>>>(queries, kv, scale, chunks_per_split, parts);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_split(const AttentionQueries& queries, const PagedKvCuda& kv, float scale, dim3 grid,
                         int64_t chunks_per_split, Partials parts, cudaStream_t stream) {
  switch (kv.head_dim) {
    case 64: return launch_split_group<T, 64>(queries, kv, scale, grid, chunks_per_split, parts, stream);
    case 128: return launch_split_group<T, 128>(queries, kv, scale, grid, chunks_per_split, parts, stream);
    case 256: return launch_split_group<T, 256>(queries, kv, scale, grid, chunks_per_split, parts, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

AttentionSplits attention_splits(int64_t n_query_rows, int64_t max_chunks, int multiprocessors,
                                 int blocks_per_multiprocessor) {
  constexpr int64_t kMinChunks = 4;
  const int64_t wanted =
      std::max<int64_t>(1, int64_t(blocks_per_multiprocessor) * multiprocessors / std::max<int64_t>(1, n_query_rows));
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
  attention_merge_kernel<<<unsigned(queries.n_q * queries.n_heads), kMergeThreads, 0, stream>>>(
      parts, n_splits, kv.head_dim, out);
  return cudaGetLastError();
}

}  // namespace freekv
