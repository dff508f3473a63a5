// Paged attention: the CUDA kernel (flashinfer layout, split KV) against kernels/ops.h
// attention_paged_reference, row by row through the same index maths (kernels/shared_math.h). Covers
// ragged batches (an empty row, one token, an exact page multiple, long rows), KV heads that attend
// different pages and different numbers of pages, every supported head_dim and GQA group, several
// splittings, and causal prefill chunks. Exits 77 when no GPU is visible.
#include <climits>
#include <cstring>
#include <random>

#include "kernels/cuda/ops_cuda.h"
#include "kernels/ops.h"
#include "kernels/shared_math.h"
#include "tests/cuda/cuda_test_util.h"

namespace freekv {
namespace {

using cuda_test::check_close;
using cuda_test::DeviceBuffer;

struct Case {
  const char* name;
  int64_t n_heads, n_kv_heads, head_dim, page_tokens;
  DType dtype;
  std::vector<int64_t> seq_tokens;  // tokens each sequence's rows hold before per-head trimming
  int64_t prefill = 0;              // > 0: one sequence, this many causal queries at its end
};

uint16_t store16(float v, DType dtype) { return dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v); }

bool run_case(const Case& c, int64_t n_splits_wanted) {
  std::mt19937 rng(uint32_t(c.head_dim * 7 + c.n_heads + c.seq_tokens.size() + c.prefill));
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n_seqs = int64_t(c.seq_tokens.size()), hd = c.head_dim, pt = c.page_tokens, esize = int64_t(dtype_size(c.dtype));
  // Rows: each (sequence, KV head) takes its own shuffled chunks; odd heads drop a page when they have
  // more than two, so heads of one sequence attend different numbers of pages.
  std::vector<int32_t> indptr = {0}, indices, last_len;
  int64_t n_chunks = 0, max_chunks = 1;
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      int64_t tokens = c.seq_tokens[size_t(s)];
      if (h % 2 == 1 && tokens > 2 * pt) tokens -= pt;
      const int64_t chunks = (tokens + pt - 1) / pt;
      for (int64_t j = 0; j < chunks; ++j) indices.push_back(int32_t(n_chunks + j));
      std::shuffle(indices.end() - chunks, indices.end(), rng);  // pool order ≠ attention order
      n_chunks += chunks;
      max_chunks = std::max(max_chunks, chunks);
      indptr.push_back(int32_t(indices.size()));
      last_len.push_back(int32_t(chunks == 0 ? 0 : tokens - (chunks - 1) * pt));
    }
  }
  std::vector<uint8_t> pool(size_t(std::max<int64_t>(1, n_chunks) * 2 * pt * hd * esize));
  for (size_t i = 0; i < pool.size() / size_t(esize); ++i) {
    const float v = nd(rng);
    if (c.dtype == DType::kF32) std::memcpy(pool.data() + 4 * i, &v, 4);
    else {
      const uint16_t h = store16(v, c.dtype);
      std::memcpy(pool.data() + 2 * i, &h, 2);
    }
  }
  // Queries: one per sequence (decode), or c.prefill causal ones at the end of sequence 0.
  const int64_t n_q = c.prefill > 0 ? c.prefill : n_seqs;
  std::vector<int32_t> q_seq(static_cast<size_t>(n_q)), visible(static_cast<size_t>(n_q));
  for (int64_t i = 0; i < n_q; ++i) {
    q_seq[size_t(i)] = c.prefill > 0 ? 0 : int32_t(i);
    visible[size_t(i)] = c.prefill > 0 ? int32_t(c.seq_tokens[0] - c.prefill + i + 1) : INT32_MAX;
  }
  std::vector<float> q(size_t(n_q * c.n_heads * hd));
  for (auto& v : q) v = nd(rng);
  const float scale = 1.f / std::sqrt(float(hd));

  // CPU twin: per query and KV head, the row's chunks as a one-head PagedKv.
  const int64_t group = c.n_heads / c.n_kv_heads;
  std::vector<float> want(q.size());
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      const int64_t row = q_seq[size_t(i)] * c.n_kv_heads + h;
      std::vector<const void*> chunks;
      for (int32_t j = indptr[size_t(row)]; j < indptr[size_t(row) + 1]; ++j) {
        chunks.push_back(pool.data() + paged_elem_offset(indices[size_t(j)], 0, 0, 0, pt, hd) * esize);
      }
      PagedKv kv;
      kv.chunks = chunks.data();
      kv.n_slots = int64_t(chunks.size());
      kv.page_tokens = pt;
      kv.head_dim = hd;
      kv.n_kv_heads = 1;
      kv.n_tokens = paged_row_tokens(kv.n_slots, last_len[size_t(row)], pt);
      kv.dtype = c.dtype;
      const int64_t causal_base = visible[size_t(i)] == INT32_MAX ? -1 : visible[size_t(i)] - 1;
      const int64_t at = (i * c.n_heads + h * group) * hd;
      attention_paged_reference(q.data() + at, 1, group, kv, scale, causal_base, want.data() + at);
    }
  }

  const AttentionSplits splits = n_splits_wanted > 0
                                     ? AttentionSplits{n_splits_wanted, (max_chunks + n_splits_wanted - 1) / n_splits_wanted}
                                     : attention_splits(n_q * c.n_kv_heads, max_chunks, 132);
  DeviceBuffer<uint8_t> dpool(pool);
  DeviceBuffer<int32_t> dindptr(indptr), dindices(indices), dlast(last_len), dseq(q_seq), dvis(visible);
  DeviceBuffer<float> dq(q), dout(q.size());
  DeviceBuffer<uint8_t> ws(attention_workspace_bytes(n_q, c.n_heads, hd, splits.n_splits));
  PagedKvCuda kv;
  kv.pool = dpool.get();
  kv.indptr = dindptr.get();
  kv.indices = dindices.get();
  kv.last_len = dlast.get();
  kv.page_tokens = pt;
  kv.head_dim = hd;
  kv.n_kv_heads = c.n_kv_heads;
  kv.dtype = c.dtype;
  AttentionQueries queries;
  queries.q = dq.get();
  queries.seq = dseq.get();
  queries.visible = dvis.get();
  queries.n_q = n_q;
  queries.n_heads = c.n_heads;
  CUDA_OK(attention_paged_cuda(queries, kv, scale, splits.n_splits, splits.chunks_per_split, ws.get(), dout.get(), nullptr));
  char what[128];
  std::snprintf(what, sizeof what, "attention %s, %lld split(s) of %lld chunks", c.name, (long long)splits.n_splits,
                (long long)splits.chunks_per_split);
  return check_close(what, dout.to_host(), want, c.dtype == DType::kF32 ? 1e-5 : 1e-4);
}

void run() {
  const std::vector<Case> cases = {
      {"decode bf16 hd128 group 4, ragged batch", 32, 8, 128, 16, DType::kBF16, {0, 1, 64, 300, 2500}},
      {"decode bf16 hd64 group 2 (freekv-tiny)", 4, 2, 64, 32, DType::kBF16, {33, 1024, 7}},
      {"decode f16 hd128 group 1", 8, 8, 128, 16, DType::kF16, {17, 160}},
      {"decode f32 hd256 group 8", 16, 2, 256, 16, DType::kF32, {100, 1}},
      {"decode bf16 hd128 group 7 (Qwen-like)", 28, 4, 128, 16, DType::kBF16, {45, 700}},
      {"prefill bf16 hd128 group 4, 40 causal queries", 8, 2, 128, 16, DType::kBF16, {600}, 40},
      {"prefill f16 hd64 group 2, whole prompt", 4, 2, 64, 32, DType::kF16, {70}, 70},
  };
  for (const Case& c : cases) {
    run_case(c, 0);
    run_case(c, 1);
    run_case(c, 7);
  }
}

}  // namespace
}  // namespace freekv

int main() { return freekv::cuda_test::run_cuda_tests(freekv::run); }
