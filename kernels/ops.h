// Every CPU op of the engine. Activations are fp32; weights and KV pages are f32, f16 or bf16
// (DType). Shapes are in element counts, row-major, outermost first. Kernels know layouts, never
// policies: which pages to attend is decided in worker/, and arrives here as chunk pointers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"

namespace freekv {

// How matmul() multiplies bf16 weights, and prefill attention bf16 K/V. kF32: the activations stay fp32
// and every weight (or K/V element) is widened (exact products). kBF16: the activations, or attention's
// scaled queries and probabilities, are rounded to bf16 (8 significant bits; oneDNN and llama.cpp do the
// same on such CPUs) and the CPU's bf16 dot products multiply them, twice the products per instruction,
// which is what prefill and batched decode are bound by. Both sum in fp32. The default is kBF16 where
// the CPU has AVX512_BF16 and oneDNN may use it, kF32 elsewhere; FREEKV_MATMUL=fp32 in the environment
// holds kF32 (any other value leaves the default). f32 and f16 weights, f16 K/V and decode attention
// (bound by reading K/V) take fp32 arithmetic.
enum class MatmulArithmetic : uint8_t { kF32, kBF16 };
MatmulArithmetic matmul_arithmetic();  // chosen once per process
const char* matmul_arithmetic_name(MatmulArithmetic arithmetic);  // "fp32", "bf16"

// y[n, m] = x[n, k] · w[m, k]ᵀ (+ bias[m] when non-null), in matmul_arithmetic() for bf16 weights.
// Small n (decode) streams w once through SIMD dot products; large n (prefill) runs oneDNN's bf16 matmul
// (bf16 arithmetic) or converts blocks of w to fp32 for BLAS (fp32). x, y: fp32. w: w_dtype. bias:
// fp32 or null.
void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t n,
            int64_t k, int64_t m, ThreadPool& pool);

// One product of a group that shares its input (matmul_shared_input).
struct MatmulOutput {
  const void* w;      // [m, k] in w_dtype
  DType w_dtype;
  const float* bias;  // [m] fp32, or null
  float* y;           // [n, m] fp32
  int64_t m;
};

// y_i = x[n, k] · w_iᵀ (+ bias_i) for every output i, each as matmul() computes it, in one pass: x is
// rounded once and the threads split the outputs' rows laid end to end, so a layer's q, k and v (or
// gate and up) wake the pool once and the narrow products are not cut into narrower pieces per thread
// (k and v of a Llama-3.2-1B layer are 512 rows: a 256-row piece each before).
void matmul_shared_input(const float* x, int64_t n, int64_t k, std::span<const MatmulOutput> outputs,
                         ThreadPool& pool);

// y[n, d] = x[n, d] / sqrt(mean(x²) + eps) * w[d]. y may equal x. w: w_dtype.
void rmsnorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t n, int64_t d);

// Rotary embedding in place, rotate-half convention (pairs i and i + head_dim/2, as Hugging Face):
// x[n, n_heads, head_dim]; positions[n] absolute token positions; inv_freq[head_dim/2] radians per
// position (scaling already folded in by the model).
void rope_apply(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t n_heads,
                int64_t head_dim);

// out[n] = silu(gate[n]) * up[n].
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// out[n, d] = table[ids[i], :] as fp32. table: [vocab, d] in dtype; ids must be < vocab (checked by caller).
void embedding(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t d, float* out);

// y[n] += x[n].
void add_inplace(float* y, const float* x, int64_t n);

// Paged KV of one sequence and one layer, as the attention kernel reads it.
// A chunk is one KV head's share of one page: [2 (K, V)][page_tokens][head_dim] in dtype, contiguous
// (the host layout of DESIGN §3, so a chunk is also the unit of recall). chunks[h * n_slots + s] is
// KV head h's chunk in slot s; heads may hold different pages in the same slot, and a null chunk is an
// empty slot that head skips (heads may attend different numbers of pages). Token j of slot s has kv
// index s * page_tokens + j; only the first n_tokens kv indices are valid.
struct PagedKv {
  const void* const* chunks = nullptr;  // [n_kv_heads * n_slots]
  int64_t n_slots = 0;
  int64_t page_tokens = 0;
  int64_t head_dim = 0;
  int64_t n_kv_heads = 0;
  int64_t n_tokens = 0;
  DType dtype = DType::kBF16;
  // > 0: a windowed layer's KV, contiguous from kv index 0 (kv index = position − a constant): query i
  // sees only kv indices > causal_base + i − sliding_window, besides the causal limit (causal_base must
  // be >= 0). 0: no lower limit.
  int64_t sliding_window = 0;
};

// Softmax attention of n_q query tokens over paged KV.
// q[n_q, n_heads, head_dim] fp32 (RoPE applied); out[n_q, n_heads, head_dim] fp32.
// GQA: query head h reads KV head h / (n_heads / n_kv_heads). scale multiplies q·k.
// causal_base >= 0: query i sees kv indices <= causal_base + i (prefill); < 0: sees all (decode).
void attention_paged(const float* q, int64_t n_q, int64_t n_heads, const PagedKv& kv, float scale,
                     int64_t causal_base, float* out, ThreadPool& pool);

// The plain twin of attention_paged (full score rows, two-pass softmax, scalar loops): the reference
// the fast path is tested against.
void attention_paged_reference(const float* q, int64_t n_q, int64_t n_heads, const PagedKv& kv,
                               float scale, int64_t causal_base, float* out);

// Attention over KV that arrives in pieces (pages streamed from the kvstore in groups): every piece
// adds to the online-softmax state of each (query, query head) — running max m, running sum l of
// exp(score − m), acc = Σ exp(score − m)·v — and attention_finish() divides. Any split of the KV into
// pieces gives attention_paged's result up to rounding.
struct AttentionState {
  int64_t n_q = 0, n_heads = 0, head_dim = 0;
  std::vector<float> m;    // [n_q, n_heads]
  std::vector<float> l;    // [n_q, n_heads]
  std::vector<float> acc;  // [n_q, n_heads, head_dim]
  void reset(int64_t n_q, int64_t n_heads, int64_t head_dim);
};

// Adds one piece: q[n_q, n_heads, head_dim] fp32 over kv, causal_base as in attention_paged but for
// this piece's kv indices (< 0: every token of the piece is visible).
void attention_paged_accumulate(const float* q, const PagedKv& kv, float scale, int64_t causal_base,
                                AttentionState* state, ThreadPool& pool);
// out[n_q, n_heads, head_dim] = acc / l (0 for a row that saw no token).
void attention_finish(const AttentionState& state, float* out);

// ---- retrieval (FreeKV §3): page digests, bound scores, query similarity ----

// How a page's keys are summarised per KV head and dimension: Quest's element-wise max/min, or
// ArkVale's bounding box centre ± mean absolute deviation (c = (max + min) / 2, r = mean |k − c|).
enum class DigestKind : uint8_t { kMinMax, kCenterMad };

// The key statistics of one page and KV head, from which either digest follows (and which the kvstore
// keeps beside the page, so a resumed session reads them instead of the keys):
// stats[0] = max_t k[t], stats[1] = min_t k[t], stats[2] = mean_t |k[t] − (max + min) / 2|, per dimension.
// keys: [n_tokens, head_dim] in dtype (the K half of one chunk); stats: [3][head_dim] fp32.
inline constexpr int64_t kKeyStatRows = 3;
void page_key_stats(const void* keys, DType dtype, int64_t n_tokens, int64_t head_dim, float* stats);

// The digest of a page from its key statistics: upper, lower: [head_dim] fp32.
void digest_from_stats(const float* stats, int64_t head_dim, DigestKind kind, float* upper, float* lower);

// Upper bound of q·k over a page: scores[g, j] = Σ_i max(q[g, i]·U[j, i], q[g, i]·L[j, i]), in fp32.
// q: [group, head_dim]; digests: [n_pages, 2 (U, L), head_dim]; scores: [group, n_pages].
void bound_scores(const float* q, int64_t group, const float* digests, int64_t n_pages, int64_t head_dim,
                  float* scores);

// Cosine similarity of a[n] and b[n] (0 when either is zero).
float cosine_similarity(const float* a, const float* b, int64_t n);

// The plain twin of matmul: one fp32 dot product per output, no SIMD, no BLAS.
void matmul_reference(const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                      int64_t n, int64_t k, int64_t m);

}  // namespace freekv
