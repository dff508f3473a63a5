// CUDA twins of kernels/ops.h, plus the device-side retrieval steps (scores, top-k, membership,
// scatter) that keep a decode step free of host round trips. Every pointer is device memory unless
// its comment says otherwise; every launcher is asynchronous on `stream` and returns the launch's CUDA
// error instead of aborting. Activations are fp32; weights and KV are f32, f16 or bf16 (DType).
// Validated against the CPU ops by tests/cuda (which exit 77, skipped, without a GPU).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "common/dtype.h"

namespace freekv {

// ---- elementwise ----

// out[n, d] = table[ids[i], :] as fp32. table: [vocab, d] in dtype; ids[n] must be < vocab.
cudaError_t embedding_cuda(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t d, float* out,
                           cudaStream_t stream);

// y[n, d] = x[n, d] / sqrt(mean(x²) + eps) * w[d]; y may equal x. Also the q/k norm (d = head_dim,
// n = tokens × heads). w: [d] in w_dtype.
cudaError_t rmsnorm_cuda(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t n, int64_t d,
                         cudaStream_t stream);

// Rotary embedding in place (rotate-half): x[n, n_heads, head_dim]; positions[n]; inv_freq[head_dim/2]
// radians per position, the model's scaling (none, linear, llama3) already folded in.
cudaError_t rope_apply_cuda(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t n_heads,
                            int64_t head_dim, cudaStream_t stream);

// out[n] = silu(gate[n]) * up[n].
cudaError_t swiglu_cuda(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);

// y[n] += x[n].
cudaError_t add_inplace_cuda(float* y, const float* x, int64_t n, cudaStream_t stream);

// y[rows, m] += bias[m] (fp32).
cudaError_t add_bias_cuda(float* y, const float* bias, int64_t rows, int64_t m, cudaStream_t stream);

// Writes new K/V rows into the paged pool: for token t < n and KV head h, k[t, h, :] and v[t, h, :]
// (fp32) go to token slot token[t] of chunk chunk[t · n_kv_heads + h], converted to dtype.
// pool: [n_chunks][2][page_tokens][head_dim] in dtype.
cudaError_t write_kv_cuda(void* pool, DType dtype, const float* k, const float* v, const int32_t* chunk,
                          const int32_t* token, int64_t n, int64_t n_kv_heads, int64_t page_tokens, int64_t head_dim,
                          cudaStream_t stream);

// dst[n] in dtype = values uniform in [lo, hi), element i a function of (seed, i) only: random weights
// and synthesized KV for benchmarks, the same on every run and device.
cudaError_t fill_uniform_cuda(void* dst, DType dtype, int64_t n, uint64_t seed, float lo, float hi,
                              cudaStream_t stream);

// ---- matrix products ----

// Owns the cuBLAS handle and the scratch that the GEMM path converts activations into.
struct MatmulContext;
cudaError_t matmul_context_create(MatmulContext** ctx, cudaStream_t stream);
void matmul_context_destroy(MatmulContext* ctx);

// y[n, m] = x[n, k] · w[m, k]ᵀ (+ bias[m] when non-null). x, y, bias fp32; w in w_dtype.
// n ≤ kGemvMaxRows (decode, batched decode): a GEMV kernel that reads w once for all n rows, with fp32
// activations. Larger n (prefill): cuBLAS with x converted to w's dtype and fp32 accumulation.
inline constexpr int64_t kGemvMaxRows = 8;
cudaError_t matmul_cuda(MatmulContext* ctx, const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                        int64_t n, int64_t k, int64_t m);

// ---- paged attention (layout in kernels/shared_math.h: pool, indptr, indices, last-page length) ----

// Rows are (sequence, KV head): row = seq * n_kv_heads + h.
struct PagedKvCuda {
  const void* pool = nullptr;       // [n_chunks][2][page_tokens][head_dim] in dtype
  const int32_t* indptr = nullptr;  // [n_seqs * n_kv_heads + 1]
  const int32_t* indices = nullptr; // [indptr[last]] chunk ids into pool
  const int32_t* last_len = nullptr;  // [n_seqs * n_kv_heads] tokens in each row's last chunk
  int64_t page_tokens = 0;
  int64_t head_dim = 0;  // 64, 128 or 256
  int64_t n_kv_heads = 0;
  DType dtype = DType::kBF16;
};

// One batch of attention queries: query i belongs to sequence seq[i] and sees the first visible[i]
// tokens of each of its rows (INT32_MAX: all; prefill passes causal_base + i + 1).
struct AttentionQueries {
  const float* q = nullptr;          // [n_q, n_heads, head_dim] fp32, RoPE applied
  const int32_t* seq = nullptr;      // [n_q]
  const int32_t* visible = nullptr;  // [n_q]
  int64_t n_q = 0;
  int64_t n_heads = 0;
};

// How to split: about blocks_per_multiprocessor (query, KV head) × split blocks per multiprocessor, so
// that the last wave of blocks is a small part of the work, each with at least a few chunks.
// n_query_rows = n_q × n_kv_heads; max_chunks: the longest row.
struct AttentionSplits {
  int64_t n_splits = 1;
  int64_t chunks_per_split = 1;
};
inline constexpr int kAttentionBlocksPerMultiprocessor = 4;
AttentionSplits attention_splits(int64_t n_query_rows, int64_t max_chunks, int multiprocessors,
                                 int blocks_per_multiprocessor = kAttentionBlocksPerMultiprocessor);

// Scratch of the split-KV pass: partial softmax states per (query, head, split).
size_t attention_workspace_bytes(int64_t n_q, int64_t n_heads, int64_t head_dim, int64_t n_splits);

// out[n_q, n_heads, head_dim] fp32 = softmax(scale · q·K) · V over each query's rows. The KV of a row is
// cut into n_splits ranges of chunks_per_split chunks that run as separate blocks (decode at long
// context needs them to fill the GPU); each block reads its KV head once for the whole query group.
// Then the splits' states are merged. A row that attends nothing gives 0.
cudaError_t attention_paged_cuda(const AttentionQueries& queries, const PagedKvCuda& kv, float scale,
                                 int64_t n_splits, int64_t chunks_per_split, void* workspace, float* out,
                                 cudaStream_t stream);

// ---- retrieval on the device (FreeKV §3–4) ----

// Key statistics of chunks as kernels/ops.h page_key_stats: stats[i] = [3][head_dim] fp32 (max, min,
// mean |k − centre|) of the first n_tokens[i] keys of chunk chunk_ids[i]. Run at page completion.
cudaError_t page_key_stats_cuda(const void* pool, DType dtype, const int32_t* chunk_ids, const int32_t* n_tokens,
                                int64_t n, int64_t page_tokens, int64_t head_dim, float* stats, cudaStream_t stream);

// How a KV head's query group is combined into one score per page.
enum class GqaCombine : uint8_t { kAvg, kAvgSoftmax };

// Combined bound scores of every row's candidate pages. Row r = seq * n_kv_heads + h scores pages
// [0, n_pages[r]) of digests + digest_offset[r] ([n_pages][2 (upper, lower)][head_dim] fp32) with query
// heads h·group .. (h+1)·group − 1 of q[seq] ([n_heads][head_dim]). Per head the bound is Σ_i
// bound_term(q_i, U_i, L_i); avgsm softmaxes each head's bounds (scaled by 1/√head_dim) before the
// group average. scores: [n_rows, max_pages], padded with −inf; workspace: [n_rows, group, max_pages].
cudaError_t page_scores_cuda(const float* q, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                             const float* digests, const int64_t* digest_offset, const int32_t* n_pages,
                             int64_t n_rows, int64_t max_pages, GqaCombine combine, float* workspace, float* scores,
                             cudaStream_t stream);

// Per-row top k of scores [n_rows, max_pages] over pages [0, n_pages[r]), ties to the lower page,
// written ascending: selected[n_rows, k], −1 after a row's min(k, n_pages[r]) pages. Rows of up to
// 4096 pages sort in one block each (CUB's block radix sort); longer ones through CUB's segmented
// radix sort in the scratch, which is made for at most n_rows × max_pages. k ≤ kTopKMax.
inline constexpr int64_t kTopKMax = 2048;
struct TopKScratch;
cudaError_t top_k_scratch_create(TopKScratch** scratch, int64_t n_rows, int64_t max_pages);
void top_k_scratch_destroy(TopKScratch* scratch);
cudaError_t top_k_pages_cuda(TopKScratch* scratch, const float* scores, const int32_t* n_pages, int64_t n_rows,
                             int64_t max_pages, int64_t k, int32_t* selected, cudaStream_t stream);

// Membership and victims, as worker/retrieval/selection.h plan_slot_updates, per row: slot_pages
// [n_rows, n_slots] (−1 empty), selected [n_rows, k] ascending (−1 padding). For every selected page
// not held, a move (slot, page) into an empty slot first, then a slot whose page was not selected, in
// slot order. moves: [n_rows, k, 2]; n_moves: [n_rows]. Rows need k ≤ n_slots ≤ 1024, pages < 65536.
cudaError_t plan_slot_updates_cuda(const int32_t* slot_pages, int64_t n_slots, const int32_t* selected, int64_t k,
                                   int64_t n_rows, int32_t* moves, int32_t* n_moves, cudaStream_t stream);

// Copies chunk src[i] of `from` to chunk dst[i] of `to` for i < n (the scatter of recalled chunks into
// their slots). Chunks are chunk_bytes each (a multiple of 16).
cudaError_t scatter_chunks_cuda(const void* from, const int32_t* src, void* to, const int32_t* dst, int64_t n,
                                int64_t chunk_bytes, cudaStream_t stream);

// Copies chunk i (chunk_bytes, a multiple of 16, 16-byte aligned) from srcs[i] to dst + i × chunk_bytes,
// for i < n, with a kernel. srcs: [n] pointers the device can read through, typically into host
// memory registered as mapped (the kvstore's pool), and the array itself device-readable (mapped
// pinned memory works): recall of scattered 16 KiB chunks this way runs near the contiguous copy rate,
// where a cudaMemcpyAsync per chunk reaches about a tenth of it (bench/gpu_bench.cu measures both).
cudaError_t gather_chunks_cuda(const uint8_t* const* srcs, int64_t n, int64_t chunk_bytes, void* dst,
                               cudaStream_t stream);

// ---- sampling ----

// ids[n] = argmax of logits[n, vocab] (ties to the lower id), the greedy sampler.
cudaError_t argmax_cuda(const float* logits, int64_t n, int64_t vocab, int32_t* ids, cudaStream_t stream);

}  // namespace freekv
