// Softmax attention over paged KV, one pass with an online softmax (running max m, running sum l,
// running weighted values acc), so a whole score row is never materialised.
//
// Work is cut into units of (KV head, query block, page split). Decode has one query, read against each
// page in its stored dtype for the whole GQA group at once; with fewer KV heads than threads the pages
// of a head are split too and the partial (m, l, acc) of the splits are merged at the end
// (flash-decoding). Prefill blocks of queries take the pages a group at a time, and both products are
// matrix products: scores [rows, tokens] = queries · keysᵀ and acc += probabilities · values, with the
// causal limit applied per row in between, in the process's arithmetic (BLAS sgemm on K/V widened once
// per unit, or the CPU's bf16 dot products on K/V as stored). A prefill chunk at long context is mostly
// this arithmetic, so it has to run at the matrix-product rate.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"

namespace freekv {
namespace {

constexpr int64_t kQueryBlock = 64;  // prefill queries sharing one pass over the pages (rows of the products)
constexpr int64_t kPageGroup = 8;    // pages whose tokens form the columns of one score product

const uint8_t* chunk_k(const PagedKv& kv, int64_t head, int64_t slot) {
  return static_cast<const uint8_t*>(kv.chunks[head * kv.n_slots + slot]);
}

size_t chunk_half_bytes(const PagedKv& kv) {
  return size_t(kv.page_tokens * kv.head_dim) * dtype_size(kv.dtype);
}

// Number of kv tokens of `slot` that query `i` may see (the end of what it sees in the slot).
int64_t visible_tokens(const PagedKv& kv, int64_t slot, int64_t causal_base, int64_t i) {
  int64_t n = std::min(kv.page_tokens, kv.n_tokens - slot * kv.page_tokens);
  if (causal_base >= 0) n = std::min(n, causal_base + i - slot * kv.page_tokens + 1);
  return std::max<int64_t>(n, 0);
}

// The lowest kv index query `i` may see: 0, or the start of its sliding window.
int64_t first_visible(const PagedKv& kv, int64_t causal_base, int64_t i) {
  return kv.sliding_window > 0 ? std::max<int64_t>(0, causal_base + i - kv.sliding_window + 1) : 0;
}

// Where what query `i` sees begins in `slot` (a token index of the slot).
int64_t first_visible_in_slot(const PagedKv& kv, int64_t slot, int64_t causal_base, int64_t i) {
  return std::clamp<int64_t>(first_visible(kv, causal_base, i) - slot * kv.page_tokens, 0, kv.page_tokens);
}

// Asks for a chunk's K and V (nothing for an empty slot) before they are read. Decode reads a head's
// pages one after another, but they lie anywhere in the pool, and each half of a 32-token page of
// head_dim 64 in bf16 is one 4 KiB page of memory, where the hardware's stream prefetcher starts over:
// fetching the whole next chunk while this one is read took 64 such reads (four 1K-token sequences,
// 16 layers) from 15–18 ms to 10.5–12 ms on the Zen 5 VM; fetching each half just before its product
// gained nothing.
void prefetch_chunk(const uint8_t* chunk, size_t bytes) {
  if (chunk == nullptr) return;
  for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(chunk + b, 0, 3);
}

struct Partial {  // online-softmax state of one (query, query head)
  float m;
  float l;
};

// The partial result of one (query, query head) row over some of the KV: online-softmax state and
// unnormalised accumulator acc[head_dim]. Units emit one per row they own (rows are disjoint across
// units, so emitting needs no lock).
using EmitRow = std::function<void(int64_t query, int64_t query_head, const Partial& state, const float* acc)>;

// Whether prefill blocks multiply in bf16 arithmetic (ops.h MatmulArithmetic): queries and probabilities
// rounded to bf16, against bf16 K/V as stored, through the CPU's bf16 dot products.
bool prefill_products_in_bf16(const PagedKv& kv) {
  return matmul_arithmetic() == MatmulArithmetic::kBF16 && cpu_primitives().gemm_bf16_pairs != nullptr &&
         kv.dtype == DType::kBF16 && kv.head_dim % 2 == 0;
}

// One page's tokens a query block sees: [from, from + count) of slot `slot`'s chunk.
struct VisibleRun {
  const uint8_t* chunk;
  int64_t slot, from, count;
};

// Prefill queries [i0, i1) of KV head h over slots [s0, s1): state and acc hold rows (i − i0)·group + g.
// The pages come a group at a time; each group is two matrix products, scores = queries · keysᵀ and
// acc += probabilities · values, with the causal (and window) limits and the online softmax applied per
// row between them. In fp32 arithmetic K/V are widened and BLAS multiplies; in bf16 they are packed as
// stored for gemm_bf16_pairs.
void attend_prefill_block(const float* q, int64_t n_heads, const PagedKv& kv, float scale, int64_t causal_base,
                          int64_t h, int64_t i0, int64_t i1, int64_t s0, int64_t s1, std::vector<Partial>& state,
                          std::vector<float>& acc) {
  const CpuPrimitives& prim = cpu_primitives();
  const bool bf16 = prefill_products_in_bf16(kv);
  const int64_t d = kv.head_dim, group = n_heads / kv.n_kv_heads, rows = (i1 - i0) * group;
  const int64_t max_tokens = kPageGroup * kv.page_tokens, max_even = max_tokens + max_tokens % 2;
  const size_t half = chunk_half_bytes(kv), elem = dtype_size(kv.dtype);
  thread_local std::vector<float> queries, keys, values, scores;
  thread_local std::vector<uint16_t> queries_bf16, keys_packed, values_packed, probs_bf16;
  thread_local std::vector<int64_t> position;  // kv index of each gathered token, ascending
  queries.resize(size_t(rows * d));
  scores.resize(size_t(rows * max_tokens));
  position.resize(size_t(max_tokens));
  if (bf16) {
    queries_bf16.resize(size_t(rows * d));
    keys_packed.resize(size_t(d * packed_columns(max_tokens)));
    values_packed.resize(size_t(max_even * packed_columns(d)));
    probs_bf16.resize(size_t(rows * max_even));
  } else {
    keys.resize(size_t(max_tokens * d));
    values.resize(size_t(max_tokens * d));
  }
  // The block's queries as rows, scaled: query i's group heads are adjacent in q.
  for (int64_t i = i0; i < i1; ++i) {
    const float* src = q + (i * n_heads + h * group) * d;
    float* dst = queries.data() + (i - i0) * group * d;
    for (int64_t c = 0; c < group * d; ++c) dst[c] = src[c] * scale;
  }
  if (bf16) prim.from_f32(queries.data(), DType::kBF16, queries_bf16.data(), rows * d);
  VisibleRun runs[kPageGroup];
  for (int64_t s = s0; s < s1;) {
    int64_t n_runs = 0, tokens = 0;
    for (; s < s1 && n_runs < kPageGroup; ++s) {
      const uint8_t* chunk = chunk_k(kv, h, s);
      const int64_t most = chunk == nullptr ? 0 : visible_tokens(kv, s, causal_base, i1 - 1);
      const int64_t from = first_visible_in_slot(kv, s, causal_base, i0);
      if (most <= from) continue;  // an empty slot of this head, or outside what the block sees
      runs[n_runs++] = VisibleRun{chunk, s, from, most - from};
      for (int64_t j = from; j < most; ++j) position[size_t(tokens + j - from)] = s * kv.page_tokens + j;
      tokens += most - from;
    }
    if (tokens == 0) continue;
    const int64_t tokens_even = tokens + tokens % 2, n_pad = packed_columns(tokens), d_pad = packed_columns(d);
    for (int64_t r = 0, t0 = 0; r < n_runs; t0 += runs[r].count, ++r) {
      const uint8_t* k_src = runs[r].chunk + size_t(runs[r].from * d) * elem;
      if (bf16) {
        const auto* k16 = reinterpret_cast<const uint16_t*>(k_src);
        const auto* v16 = reinterpret_cast<const uint16_t*>(k_src + half);
        pack_pairs_from_rows(k16, d, runs[r].count, d, t0, n_pad, keys_packed.data());
        pack_pairs_from_columns(v16, d, runs[r].count, d, t0, d_pad, values_packed.data());
      } else {
        prim.to_f32(k_src, kv.dtype, keys.data() + t0 * d, runs[r].count * d);
        prim.to_f32(k_src + half, kv.dtype, values.data() + t0 * d, runs[r].count * d);
      }
    }
    if (bf16) {
      if (tokens % 2 != 0) {  // the last pair's second row: zero, so the zero probability beside it adds 0
        uint16_t* pad = values_packed.data() + (tokens / 2) * d_pad * 2 + 1;
        for (int64_t j = 0; j < d_pad; ++j) pad[j * 2] = 0;
      }
      prim.gemm_bf16_pairs(queries_bf16.data(), d, keys_packed.data(), rows, tokens, d, scores.data(), tokens, false);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(tokens), int(d), 1.f, queries.data(), int(d),
                  keys.data(), int(d), 0.f, scores.data(), int(tokens));
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* row = scores.data() + r * tokens;
      const int64_t i = i0 + r / group;
      // Tokens are in kv order, so what query i may see is a run [begin, seen): a prefix without a
      // sliding window.
      int64_t seen = causal_base < 0 ? tokens
                                     : std::upper_bound(position.begin(), position.begin() + tokens,
                                                        causal_base + i) - position.begin();
      int64_t begin = kv.sliding_window > 0 ? std::lower_bound(position.begin(), position.begin() + seen,
                                                               first_visible(kv, causal_base, i)) - position.begin()
                                            : 0;
      Partial& st = state[size_t(r)];
      const float m_new = seen > begin ? std::max(st.m, prim.max_of(row + begin, seen - begin)) : st.m;
      const bool nothing = seen <= begin || m_new == -std::numeric_limits<float>::infinity();
      if (nothing) begin = seen = 0;  // nothing of this group for the row: all zero probabilities
      // The probabilities: the row's numerators in place (fp32), or rounded into probs_bf16, zero
      // outside [begin, seen) (and on the padding of an odd count).
      float sum = 0;
      if (bf16) {
        uint16_t* p = probs_bf16.data() + r * tokens_even;
        if (!nothing) sum = prim.exp_shifted_bf16(row + begin, seen - begin, m_new, p + begin);
        std::fill(p, p + begin, uint16_t(0));
        std::fill(p + seen, p + tokens_even, uint16_t(0));
      } else {
        if (!nothing) sum = prim.exp_shifted(row + begin, seen - begin, m_new);
        std::fill(row, row + begin, 0.f);
        std::fill(row + seen, row + tokens, 0.f);
      }
      if (!nothing) {
        const float decay = std::exp(st.m - m_new);  // exp(-inf) = 0 on the row's first tokens
        st.l = st.l * decay + sum;
        st.m = m_new;
        float* a = acc.data() + r * d;
        for (int64_t c = 0; c < d; ++c) a[c] *= decay;
      }
    }
    if (bf16) {
      prim.gemm_bf16_pairs(probs_bf16.data(), tokens_even, values_packed.data(), rows, d, tokens_even, acc.data(), d,
                           true);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(d), int(tokens), 1.f, scores.data(),
                  int(tokens), values.data(), int(d), 1.f, acc.data(), int(d));
    }
  }
}

void attend(const float* q, int64_t n_q, int64_t n_heads, const PagedKv& kv, float scale, int64_t causal_base,
            ThreadPool& pool, const EmitRow& emit) {
  const CpuPrimitives& prim = cpu_primitives();
  const int64_t d = kv.head_dim, group = n_heads / kv.n_kv_heads;
  const int64_t used_slots = (kv.n_tokens + kv.page_tokens - 1) / kv.page_tokens;
  const int64_t n_qblocks = (n_q + kQueryBlock - 1) / kQueryBlock;
  if (n_q > 1) use_single_threaded_blas();
  int64_t n_splits = 1;
  if (n_q == 1 && kv.n_kv_heads < 2 * pool.size()) {
    n_splits = std::clamp<int64_t>((2 * pool.size() + kv.n_kv_heads - 1) / kv.n_kv_heads, 1, std::max<int64_t>(1, used_slots));
  }
  const int64_t n_units = kv.n_kv_heads * n_qblocks * n_splits;
  const int64_t slots_per_split = (used_slots + n_splits - 1) / std::max<int64_t>(1, n_splits);
  const size_t half = chunk_half_bytes(kv);

  // Split partials: [n_kv_heads][n_splits][group] states and [.. ][group][d] accumulators (decode only).
  std::vector<Partial> split_state(static_cast<size_t>(n_splits > 1 ? kv.n_kv_heads * n_splits * group : 0));
  std::vector<float> split_acc(static_cast<size_t>(n_splits > 1 ? kv.n_kv_heads * n_splits * group * d : 0));

  pool.parallel_for(n_units, [&](int64_t ub, int64_t ue, int) {
    thread_local std::vector<float> scores, acc, decay;
    thread_local std::vector<Partial> state;
    scores.resize(size_t(kv.page_tokens * group));  // [group][page_tokens] for one query
    decay.resize(size_t(group));
    for (int64_t u = ub; u < ue; ++u) {
      const int64_t split = u % n_splits, qb = (u / n_splits) % n_qblocks, h = u / (n_splits * n_qblocks);
      const int64_t i0 = qb * kQueryBlock, i1 = std::min(n_q, i0 + kQueryBlock);
      const int64_t s0 = split * slots_per_split, s1 = std::min(used_slots, s0 + slots_per_split);
      const int64_t rows = (i1 - i0) * group;
      state.assign(size_t(rows), Partial{-std::numeric_limits<float>::infinity(), 0.f});
      acc.assign(size_t(rows * d), 0.f);
      if (i1 - i0 > 1) {
        attend_prefill_block(q, n_heads, kv, scale, causal_base, h, i0, i1, s0, s1, state, acc);
      } else {
        // One query (decode): read each chunk in its stored dtype, once for the whole group.
        const float* qg = q + (i0 * n_heads + h * group) * d;
        for (int64_t s = s0; s < s1; ++s) {
          const uint8_t* chunk = chunk_k(kv, h, s);
          if (s + 1 < s1) prefetch_chunk(chunk_k(kv, h, s + 1), 2 * half);  // the next page, K and V
          if (chunk == nullptr) continue;  // an empty slot of this head
          const int64_t from = first_visible_in_slot(kv, s, causal_base, i0);
          const int64_t most = visible_tokens(kv, s, causal_base, i0) - from;
          if (most <= 0) continue;
          chunk += size_t(from * d) * dtype_size(kv.dtype);  // the keys (and, half a chunk on, the values) it sees
          prim.scores_group(qg, group, chunk, kv.dtype, most, d, scale, scores.data());
          for (int64_t g = 0; g < group; ++g) {
            float* sg = scores.data() + g * most;
            Partial& st = state[size_t(g)];
            const float m_new = std::max(st.m, prim.max_of(sg, most));
            const float sum = prim.exp_shifted(sg, most, m_new);
            decay[size_t(g)] = std::exp(st.m - m_new);  // exp(-inf) = 0 on the first page
            st.l = st.l * decay[size_t(g)] + sum;
            st.m = m_new;
          }
          prim.accumulate_group(scores.data(), group, chunk + half, kv.dtype, most, d, decay.data(), acc.data());
        }
      }
      if (n_splits == 1) {
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t g = 0; g < group; ++g) {
            const int64_t row = (i - i0) * group + g;
            emit(i, h * group + g, state[size_t(row)], acc.data() + row * d);
          }
        }
      } else {
        const int64_t base = (h * n_splits + split) * group;
        std::copy(state.begin(), state.begin() + group, split_state.begin() + base);
        std::copy(acc.begin(), acc.begin() + group * d, split_acc.begin() + base * d);
      }
    }
  });

  if (n_splits > 1) {  // merge the splits of the single query, then emit
    std::vector<float> merged(static_cast<size_t>(d));
    for (int64_t h = 0; h < kv.n_kv_heads; ++h) {
      for (int64_t g = 0; g < group; ++g) {
        Partial total{-std::numeric_limits<float>::infinity(), 0.f};
        for (int64_t s = 0; s < n_splits; ++s) total.m = std::max(total.m, split_state[size_t((h * n_splits + s) * group + g)].m);
        std::fill(merged.begin(), merged.end(), 0.f);
        for (int64_t s = 0; s < n_splits; ++s) {
          const int64_t idx = (h * n_splits + s) * group + g;
          const Partial& st = split_state[size_t(idx)];
          if (st.l == 0.f) continue;
          const float w = std::exp(st.m - total.m);
          total.l += st.l * w;
          for (int64_t c = 0; c < d; ++c) merged[size_t(c)] += split_acc[size_t(idx * d + c)] * w;
        }
        emit(0, h * group + g, total, merged.data());
      }
    }
  }
}

}  // namespace

void attention_paged(const float* q, int64_t n_q, int64_t n_heads, const PagedKv& kv, float scale,
                     int64_t causal_base, float* out, ThreadPool& pool) {
  const int64_t d = kv.head_dim;
  attend(q, n_q, n_heads, kv, scale, causal_base, pool,
         [&](int64_t i, int64_t hq, const Partial& st, const float* acc) {
           const float inv = st.l > 0.f ? 1.f / st.l : 0.f;
           float* o = out + (i * n_heads + hq) * d;
           for (int64_t c = 0; c < d; ++c) o[c] = acc[c] * inv;
         });
}

void AttentionState::reset(int64_t nq, int64_t nh, int64_t hd) {
  n_q = nq;
  n_heads = nh;
  head_dim = hd;
  m.assign(size_t(nq * nh), -std::numeric_limits<float>::infinity());
  l.assign(size_t(nq * nh), 0.f);
  acc.assign(size_t(nq * nh * hd), 0.f);
}

void attention_paged_accumulate(const float* q, const PagedKv& kv, float scale, int64_t causal_base,
                                AttentionState* state, ThreadPool& pool) {
  const int64_t d = kv.head_dim, n_heads = state->n_heads;
  attend(q, state->n_q, n_heads, kv, scale, causal_base, pool,
         [&](int64_t i, int64_t hq, const Partial& part, const float* part_acc) {
           if (part.l == 0.f) return;  // this piece showed the row nothing
           const size_t row = size_t(i * n_heads + hq);
           float& m = state->m[row];
           float& l = state->l[row];
           float* acc = state->acc.data() + row * size_t(d);
           const float m_new = std::max(m, part.m);
           const float w_old = std::exp(m - m_new), w_part = std::exp(part.m - m_new);  // exp(-inf) = 0
           l = l * w_old + part.l * w_part;
           for (int64_t c = 0; c < d; ++c) acc[c] = acc[c] * w_old + part_acc[c] * w_part;
           m = m_new;
         });
}

void attention_finish(const AttentionState& state, float* out) {
  const int64_t d = state.head_dim;
  for (int64_t row = 0; row < state.n_q * state.n_heads; ++row) {
    const float inv = state.l[size_t(row)] > 0.f ? 1.f / state.l[size_t(row)] : 0.f;
    for (int64_t c = 0; c < d; ++c) out[row * d + c] = state.acc[size_t(row * d + c)] * inv;
  }
}

void attention_paged_reference(const float* q, int64_t n_q, int64_t n_heads, const PagedKv& kv,
                               float scale, int64_t causal_base, float* out) {
  const int64_t d = kv.head_dim, group = n_heads / kv.n_kv_heads, pt = kv.page_tokens;
  const size_t half = chunk_half_bytes(kv);
  std::vector<double> scores(static_cast<size_t>(kv.n_tokens));
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t hq = 0; hq < n_heads; ++hq) {
      const int64_t h = hq / group;
      const float* qv = q + (i * n_heads + hq) * d;
      const int64_t n_vis = causal_base >= 0 ? std::min(kv.n_tokens, causal_base + i + 1) : kv.n_tokens;
      const int64_t t0 = kv.sliding_window > 0 ? std::max<int64_t>(0, causal_base + i - kv.sliding_window + 1) : 0;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t t = t0; t < n_vis; ++t) {
        const uint8_t* chunk = chunk_k(kv, h, t / pt);
        if (chunk == nullptr) {  // an empty slot: its tokens take no weight
          scores[size_t(t)] = -std::numeric_limits<double>::infinity();
          continue;
        }
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += double(qv[c]) * load_as_f32(chunk, kv.dtype, size_t((t % pt) * d + c));
        scores[size_t(t)] = s * scale;
        mx = std::max(mx, scores[size_t(t)]);
      }
      double sum = 0;
      if (mx > -std::numeric_limits<double>::infinity()) {
        for (int64_t t = t0; t < n_vis; ++t) sum += (scores[size_t(t)] = std::exp(scores[size_t(t)] - mx));
      }
      float* o = out + (i * n_heads + hq) * d;
      for (int64_t c = 0; c < d; ++c) {
        double v = 0;
        for (int64_t t = t0; t < n_vis; ++t) {
          if (chunk_k(kv, h, t / pt) == nullptr) continue;
          const uint8_t* chunk = chunk_k(kv, h, t / pt) + half;
          v += scores[size_t(t)] * load_as_f32(chunk, kv.dtype, size_t((t % pt) * d + c));
        }
        o[c] = sum > 0 ? float(v / sum) : 0.f;
      }
    }
  }
}

}  // namespace freekv
