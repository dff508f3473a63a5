// Retrieval on the GPU (FreeKV §3–4), so that a decode step selects and moves pages without a host
// round trip: key statistics at page completion, bound scores with the GQA combine, per-head top-k,
// membership and victims, the gather of recalled chunks from the host pool and their scatter into slots.
// Twins of kernels/cpu/retrieval.cc and worker/retrieval/selection.cc, with the per-element arithmetic from
// kernels/shared_math.h.
#include <cub/cub.cuh>

#include <algorithm>
#include <climits>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/shared_math.h"

namespace freekv {

struct TopKScratch {
  int64_t n_rows = 0, max_pages = 0;
  float* keys_out = nullptr;     // [n_rows, max_pages] sorted scores (unused beyond the sort)
  int32_t* pages_in = nullptr;   // [n_rows, max_pages] 0 .. max_pages − 1 per row
  int32_t* pages_out = nullptr;  // [n_rows, max_pages] pages by descending score
  int32_t* offsets = nullptr;    // [n_rows + 1] row starts
  void* cub_temp = nullptr;
  size_t cub_temp_bytes = 0;
};

namespace {

constexpr int kThreads = 256;
constexpr int kMaxGroup = 8;

// One block per chunk, one thread per dimension (coalesced across the row of a token).
template <typename T>
__global__ void key_stats_kernel(const T* pool, const int32_t* chunk_ids, const int32_t* n_tokens,
                                 int64_t page_tokens, int64_t head_dim, float* stats) {
  const int64_t chunk = chunk_ids[blockIdx.x], n = n_tokens[blockIdx.x];
  float* st = stats + int64_t(blockIdx.x) * 3 * head_dim;
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float mx = -INFINITY, mn = INFINITY;
    for (int64_t t = 0; t < n; ++t) {
      const float k = to_f32(pool[paged_elem_offset(chunk, 0, t, i, page_tokens, head_dim)]);
      mx = fmaxf(mx, k);
      mn = fminf(mn, k);
    }
    const float c = 0.5f * (mx + mn);
    float r = 0.f;
    for (int64_t t = 0; t < n; ++t) r += fabsf(to_f32(pool[paged_elem_offset(chunk, 0, t, i, page_tokens, head_dim)]) - c);
    st[i] = mx;
    st[head_dim + i] = mn;
    st[2 * head_dim + i] = n > 0 ? r / float(n) : 0.f;
  }
}

// Per-head bounds: grid (row, block of kPagesPerBlock pages); the group's queries in shared memory,
// a warp per page, each lane four dimensions at a time. raw: [n_rows, group, max_pages].
constexpr int kPagesPerBlock = 64;
constexpr int kMaxHeadDim = 256;

__global__ void page_bounds_kernel(const float* q, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                   const float* digests, const int64_t* digest_offset, const int32_t* n_pages,
                                   int64_t max_pages, float* raw) {
  __shared__ float4 qs[kMaxGroup * kMaxHeadDim / 4];
  const int64_t r = blockIdx.x, group = n_heads / n_kv_heads, dims4 = head_dim / 4;
  const int64_t seq = r / n_kv_heads, h = r % n_kv_heads, n = n_pages[r];
  const float4* qg = reinterpret_cast<const float4*>(q + (seq * n_heads + h * group) * head_dim);
  for (int64_t i = threadIdx.x; i < group * dims4; i += blockDim.x) qs[i] = qg[i];
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  const int64_t first = int64_t(blockIdx.y) * kPagesPerBlock, last = min(n, first + kPagesPerBlock);
  const float* dg = digests + digest_offset[r];
  for (int64_t j = first + warp; j < last; j += n_warps) {
    const float4* upper = reinterpret_cast<const float4*>(dg + j * 2 * head_dim);
    const float4* lower = upper + dims4;
    float s[kMaxGroup] = {};
    for (int64_t i = lane; i < dims4; i += 32) {
      const float4 u = upper[i], l = lower[i];
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= group) break;
        const float4 qv = qs[g * dims4 + i];
        s[g] += bound_term(qv.x, u.x, l.x) + bound_term(qv.y, u.y, l.y) + bound_term(qv.z, u.z, l.z) +
                bound_term(qv.w, u.w, l.w);
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) break;
      const float total = warp_sum(s[g]);
      if (lane == 0) raw[(r * group + g) * max_pages + j] = total;
    }
  }
}

// The GQA combine, one block per row: per head (softmaxed for avgsm, scaled by 1/√head_dim like
// attention logits), averaged over the group in head order, as score_candidates does.
__global__ void combine_scores_kernel(int64_t group, int64_t head_dim, const int32_t* n_pages, int64_t max_pages,
                                      GqaCombine combine, const float* raw, float* scores) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x, n = n_pages[r];
  const float scale = rsqrtf(float(head_dim));
  for (int64_t g = 0; g < group; ++g) {
    const float* rg = raw + (r * group + g) * max_pages;
    float mx = 0.f, sum = 1.f;
    if (combine == GqaCombine::kAvgSoftmax) {
      float local = -INFINITY;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) local = fmaxf(local, rg[j]);
      mx = block_reduce<true>(local, scratch) * scale;
      float part = 0.f;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) part += expf(rg[j] * scale - mx);
      sum = block_reduce<false>(part, scratch);
    }
    for (int64_t j = threadIdx.x; j < max_pages; j += blockDim.x) {
      float& out = scores[r * max_pages + j];
      if (j >= n) {
        out = -INFINITY;
        continue;
      }
      const float s = combine == GqaCombine::kAvgSoftmax ? expf(rg[j] * scale - mx) / sum : rg[j];
      // + 0.f turns −0 into +0: the radix sort orders −0 below +0, the CPU's comparison calls them equal.
      out = (g == 0 ? 0.f : out) + s / float(group) + 0.f;
    }
  }
}

__global__ void iota_rows_kernel(int32_t* pages, int64_t n_rows, int64_t max_pages, int32_t* offsets) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_rows * max_pages) pages[i] = int32_t(i % max_pages);
  if (i <= n_rows) offsets[i] = int32_t(i * max_pages);
}

// Sorts buf[0, width) ascending in shared memory (bitonic; width a power of two), all threads taking part.
__device__ void sort_ascending_shared(int32_t* buf, int64_t width) {
  for (int64_t size = 2; size <= width; size <<= 1) {
    for (int64_t stride = size / 2; stride > 0; stride >>= 1) {
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        const int64_t j = i ^ stride;
        if (j > i) {
          const bool ascending = (i & size) == 0;
          if ((buf[i] > buf[j]) == ascending) {
            const int32_t t = buf[i];
            buf[i] = buf[j];
            buf[j] = t;
          }
        }
      }
      __syncthreads();
    }
  }
}

// The row's chosen pages (buf[0, take), any order; the rest of buf unset) sorted ascending into
// selected[k], −1 after them.
__device__ void write_selection(int32_t* buf, int64_t take, int64_t k, int32_t* selected) {
  int64_t width = 1;
  while (width < k) width <<= 1;
  for (int64_t i = take + threadIdx.x; i < width; i += blockDim.x) buf[i] = INT_MAX;
  __syncthreads();
  sort_ascending_shared(buf, width);
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) selected[i] = buf[i] == INT_MAX ? -1 : buf[i];
}

// Rows of at most kBlockSortPages pages: one block sorts a row's (score, page) pairs descending with
// CUB's block radix sort (stable: equal scores keep page order) and keeps the first k.
constexpr int kBlockSortThreads = 512, kBlockSortItems = 8;
constexpr int64_t kBlockSortPages = kBlockSortThreads * kBlockSortItems;

__global__ void __launch_bounds__(kBlockSortThreads)
    block_top_k_kernel(const float* scores, const int32_t* n_pages, int64_t max_pages, int64_t k, int32_t* selected) {
  using Sort = cub::BlockRadixSort<float, kBlockSortThreads, kBlockSortItems, int32_t>;
  __shared__ typename Sort::TempStorage sort_storage;
  __shared__ int32_t buf[kTopKMax];
  const int64_t r = blockIdx.x, take = min(k, int64_t(n_pages[r]));
  float keys[kBlockSortItems];
  int32_t pages[kBlockSortItems];
  for (int i = 0; i < kBlockSortItems; ++i) {
    const int64_t j = int64_t(threadIdx.x) * kBlockSortItems + i;  // blocked: thread t holds a run of pages
    keys[i] = j < max_pages ? scores[r * max_pages + j] : -INFINITY;
    pages[i] = int32_t(j);
  }
  Sort(sort_storage).SortDescending(keys, pages);
  for (int i = 0; i < kBlockSortItems; ++i) {
    const int64_t rank = int64_t(threadIdx.x) * kBlockSortItems + i;
    if (rank < take) buf[rank] = pages[i];
  }
  __syncthreads();
  write_selection(buf, take, k, selected + r * k);
}

// Longer rows: after CUB's segmented radix sort (pages_by_score), one block per row keeps the first k.
__global__ void take_top_kernel(const int32_t* pages_by_score, const int32_t* n_pages, int64_t max_pages, int64_t k,
                                int32_t* selected) {
  __shared__ int32_t buf[kTopKMax];
  const int64_t r = blockIdx.x, take = min(k, int64_t(n_pages[r]));
  for (int64_t i = threadIdx.x; i < take; i += blockDim.x) buf[i] = pages_by_score[r * max_pages + i];
  __syncthreads();
  write_selection(buf, take, k, selected + r * k);
}

constexpr int kMaxPageId = 65536;
constexpr int kMaxSlots = 1024;

// Appends, in index order, every i < n with keep(i) to out (starting at *count), by the first warp:
// each round takes 32 candidates, and a ballot gives every kept one its place.
template <typename Keep, typename Emit>
__device__ void warp_compact(int64_t n, int* count, Keep keep, Emit emit) {
  const int lane = threadIdx.x % 32;
  for (int64_t base = 0; base < n; base += 32) {
    const int64_t i = base + lane;
    const bool take = i < n && keep(i);
    const uint32_t mask = __ballot_sync(0xffffffffu, take);
    if (take) emit(*count + __popc(mask & ((1u << lane) - 1u)), i);
    *count += __popc(mask);  // every lane keeps the same running count
  }
}

// One block per row. The bitmaps of wanted and held pages are built by all threads; the first warp
// then lists the free slots (empty ones, then slots whose page was not selected, in slot order, as
// plan_slot_updates does) and assigns them to the selected pages not held, in selection order.
__global__ void plan_slots_kernel(const int32_t* slot_pages, int64_t n_slots, const int32_t* selected, int64_t k,
                                  int32_t* moves, int32_t* n_moves) {
  __shared__ uint32_t wanted[kMaxPageId / 32], held[kMaxPageId / 32];
  __shared__ int32_t slots[kMaxSlots], free_slots[kMaxSlots];
  const int64_t r = blockIdx.x;
  const int32_t* sel = selected + r * k;
  for (int i = threadIdx.x; i < kMaxPageId / 32; i += blockDim.x) wanted[i] = held[i] = 0;
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) slots[s] = slot_pages[r * n_slots + s];
  __syncthreads();
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    if (sel[i] >= 0) atomicOr(&wanted[sel[i] / 32], 1u << (sel[i] % 32));
  }
  __syncthreads();
  auto bit = [](const uint32_t* set, int32_t p) { return (set[p / 32] >> (p % 32) & 1u) != 0; };
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) {
    if (slots[s] >= 0 && bit(wanted, slots[s])) atomicOr(&held[slots[s] / 32], 1u << (slots[s] % 32));
  }
  __syncthreads();
  if (threadIdx.x >= 32) return;
  int n_free = 0, n_out = 0;
  auto to_free = [&](int at, int64_t s) { free_slots[at] = int32_t(s); };
  warp_compact(n_slots, &n_free, [&](int64_t s) { return slots[s] < 0; }, to_free);
  warp_compact(n_slots, &n_free, [&](int64_t s) { return slots[s] >= 0 && !bit(wanted, slots[s]); }, to_free);
  __syncwarp();
  warp_compact(k, &n_out, [&](int64_t i) { return sel[i] >= 0 && !bit(held, sel[i]); },
               [&](int at, int64_t i) {
                 moves[(r * k + at) * 2] = free_slots[at];
                 moves[(r * k + at) * 2 + 1] = sel[i];
               });
  if (threadIdx.x == 0) n_moves[r] = n_out;
}

// The gather runs beside decode on the same GPU: a few blocks, each keeping kGatherLoads 16-byte reads
// per thread in flight (32 blocks × 256 threads × 4 × 16 B = 512 KiB, enough to cover PCIe latency),
// so that it leaves the multiprocessors to the compute instead of parking thousands of blocks on
// PCIe reads (bench/gpu_bench.cu measures it beside an HBM-bound kernel).
constexpr int kGatherBlocks = 32, kGatherLoads = 4;

__global__ void gather_kernel(const uint8_t* const* srcs, int64_t n, int64_t words_per_chunk, uint4* dst) {
  for (int64_t c = blockIdx.x; c < n; c += gridDim.x) {
    const uint4* s = reinterpret_cast<const uint4*>(srcs[c]);
    uint4* d = dst + c * words_per_chunk;
    for (int64_t i = threadIdx.x; i < words_per_chunk; i += int64_t(blockDim.x) * kGatherLoads) {
      uint4 v[kGatherLoads];
#pragma unroll
      for (int u = 0; u < kGatherLoads; ++u) {
        if (i + u * blockDim.x < words_per_chunk) v[u] = s[i + u * blockDim.x];
      }
#pragma unroll
      for (int u = 0; u < kGatherLoads; ++u) {
        if (i + u * blockDim.x < words_per_chunk) d[i + u * blockDim.x] = v[u];
      }
    }
  }
}

__global__ void scatter_kernel(const uint4* from, const int32_t* src, uint4* to, const int32_t* dst,
                               int64_t words_per_chunk) {
  const uint4* s = from + int64_t(src[blockIdx.x]) * words_per_chunk;
  uint4* d = to + int64_t(dst[blockIdx.x]) * words_per_chunk;
  for (int64_t i = threadIdx.x; i < words_per_chunk; i += blockDim.x) d[i] = s[i];
}

}  // namespace

cudaError_t page_key_stats_cuda(const void* pool, DType dtype, const int32_t* chunk_ids, const int32_t* n_tokens,
                                int64_t n, int64_t page_tokens, int64_t head_dim, float* stats, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    key_stats_kernel<T><<<unsigned(n), unsigned(head_dim), 0, stream>>>(static_cast<const T*>(pool), chunk_ids,
                                                                         n_tokens, page_tokens, head_dim, stats);
    return cudaGetLastError();
  });
}

cudaError_t page_scores_cuda(const float* q, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                             const float* digests, const int64_t* digest_offset, const int32_t* n_pages,
                             int64_t n_rows, int64_t max_pages, GqaCombine combine, float* workspace, float* scores,
                             cudaStream_t stream) {
  if (n_rows == 0 || max_pages == 0) return cudaSuccess;
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads / n_kv_heads > kMaxGroup || head_dim % 4 != 0 ||
      head_dim > kMaxHeadDim) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(unsigned(n_rows), blocks_for(max_pages, kPagesPerBlock));
  page_bounds_kernel<<<grid, kThreads, 0, stream>>>(q, n_heads, n_kv_heads, head_dim, digests, digest_offset, n_pages,
                                                    max_pages, workspace);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  combine_scores_kernel<<<unsigned(n_rows), kThreads, 0, stream>>>(n_heads / n_kv_heads, head_dim, n_pages, max_pages,
                                                                   combine, workspace, scores);
  return cudaGetLastError();
}

cudaError_t top_k_scratch_create(TopKScratch** scratch, int64_t n_rows, int64_t max_pages) {
  auto* s = new TopKScratch;
  s->n_rows = n_rows;
  s->max_pages = max_pages;
  const size_t n = size_t(n_rows * max_pages);
  cudaError_t e = cudaMalloc(&s->keys_out, n * sizeof(float));
  if (e == cudaSuccess) e = cudaMalloc(&s->pages_in, n * sizeof(int32_t));
  if (e == cudaSuccess) e = cudaMalloc(&s->pages_out, n * sizeof(int32_t));
  if (e == cudaSuccess) e = cudaMalloc(&s->offsets, size_t(n_rows + 1) * sizeof(int32_t));
  if (e == cudaSuccess) {
    e = cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, s->cub_temp_bytes, static_cast<const float*>(nullptr),
                                                           s->keys_out, s->pages_in, s->pages_out, int64_t(n),
                                                           int64_t(n_rows), s->offsets, s->offsets + 1);
  }
  if (e == cudaSuccess) e = cudaMalloc(&s->cub_temp, s->cub_temp_bytes);
  if (e == cudaSuccess) {
    iota_rows_kernel<<<blocks_for(int64_t(n) + 1, kThreads), kThreads>>>(s->pages_in, n_rows, max_pages, s->offsets);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    top_k_scratch_destroy(s);
    return e;
  }
  *scratch = s;
  return cudaSuccess;
}

void top_k_scratch_destroy(TopKScratch* s) {
  if (s == nullptr) return;
  cudaFree(s->keys_out);
  cudaFree(s->pages_in);
  cudaFree(s->pages_out);
  cudaFree(s->offsets);
  cudaFree(s->cub_temp);
  delete s;
}

cudaError_t top_k_pages_cuda(TopKScratch* s, const float* scores, const int32_t* n_pages, int64_t n_rows,
                             int64_t max_pages, int64_t k, int32_t* selected, cudaStream_t stream) {
  if (n_rows == 0 || k == 0) return cudaSuccess;
  if (n_rows > s->n_rows || max_pages != s->max_pages || k > kTopKMax) return cudaErrorInvalidValue;
  if (max_pages <= kBlockSortPages) {
    block_top_k_kernel<<<unsigned(n_rows), kBlockSortThreads, 0, stream>>>(scores, n_pages, max_pages, k, selected);
    return cudaGetLastError();
  }
  cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      s->cub_temp, s->cub_temp_bytes, scores, s->keys_out, s->pages_in, s->pages_out, n_rows * max_pages, n_rows,
      s->offsets, s->offsets + 1, 0, int(sizeof(float) * 8), stream);
  if (e != cudaSuccess) return e;
  take_top_kernel<<<unsigned(n_rows), 1024, 0, stream>>>(s->pages_out, n_pages, max_pages, k, selected);
  return cudaGetLastError();
}

cudaError_t plan_slot_updates_cuda(const int32_t* slot_pages, int64_t n_slots, const int32_t* selected, int64_t k,
                                   int64_t n_rows, int32_t* moves, int32_t* n_moves, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  if (n_slots > kMaxSlots || k > n_slots) return cudaErrorInvalidValue;
  plan_slots_kernel<<<unsigned(n_rows), kThreads, 0, stream>>>(slot_pages, n_slots, selected, k, moves, n_moves);
  return cudaGetLastError();
}

cudaError_t scatter_chunks_cuda(const void* from, const int32_t* src, void* to, const int32_t* dst, int64_t n,
                                int64_t chunk_bytes, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (chunk_bytes % 16 != 0) return cudaErrorInvalidValue;
  scatter_kernel<<<unsigned(n), kThreads, 0, stream>>>(static_cast<const uint4*>(from), src, static_cast<uint4*>(to),
                                                       dst, chunk_bytes / 16);
  return cudaGetLastError();
}

cudaError_t gather_chunks_cuda(const uint8_t* const* srcs, int64_t n, int64_t chunk_bytes, void* dst,
                               cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (chunk_bytes % 16 != 0) return cudaErrorInvalidValue;
  gather_kernel<<<unsigned(std::min<int64_t>(n, kGatherBlocks)), kThreads, 0, stream>>>(srcs, n, chunk_bytes / 16,
                                                                                      static_cast<uint4*>(dst));
  return cudaGetLastError();
}

}  // namespace freekv
