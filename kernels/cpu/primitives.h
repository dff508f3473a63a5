// Inner loops of the CPU kernels, in a scalar and an AVX2 build of each, and AVX-512 decode matvecs
// over bf16 weights (widening to fp32, and in bf16 arithmetic where the CPU has AVX512_BF16). The algorithms (matmul.cc, attention.cc) are written once over these;
// cpu_primitives() picks the best set the CPU supports, once. FREEKV_SIMD=scalar or FREEKV_SIMD=avx2
// in the environment holds it to that set (to compare them end to end, and to run the AVX2 set on a
// CPU that has AVX-512).
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace freekv {

struct CpuPrimitives {
  const char* name;
  // y[j * ldy + r] = Σ_k x[j, k] · w[r, k] for j < n, r < rows. x: [n, k] fp32 (n ≤ 8);
  // w: [rows, k] in w_dtype. Streams w once.
  void (*matvec)(const float* x, int64_t n, const void* w, DType w_dtype, int64_t k, int64_t rows,
                 float* y, int64_t ldy);
  // The matvec in bf16 arithmetic, for matmul()'s bf16 mode: y[j * ldy + r] = Σ_k x[j, k] · w[r, k];
  // x: [n, k] bf16 (n ≤ 8, activations already rounded), w: [rows, k] bf16; the exact products of bf16
  // pairs summed in fp32. Null in every set but the AVX-512 one on a CPU with AVX512_BF16.
  void (*matvec_bf16_dot)(const uint16_t* x, int64_t n, const uint16_t* w, int64_t k, int64_t rows, float* y,
                          int64_t ldy);
  // A small matrix product in bf16 arithmetic, for prefill attention: c[i, j] (+)= Σ_k a[i, k] · B[k, j]
  // for i < m, j < n. a: bf16 [m, lda] (k ≤ lda, k even); b_packed: B in the pair layout of
  // pack_pairs_from_rows / pack_pairs_from_columns, [k/2][packed_columns(n)][2] bf16; c: fp32 [m, ldc];
  // accumulate adds to c, else c is overwritten. Null in every set but the AVX-512 one on a CPU with
  // AVX512_BF16.
  void (*gemm_bf16_pairs)(const uint16_t* a, int64_t lda, const uint16_t* b_packed, int64_t m, int64_t n, int64_t k,
                          float* c, int64_t ldc, bool accumulate);
  // dst[n] = src[n] as fp32.
  void (*to_f32)(const void* src, DType dtype, float* dst, int64_t n);
  // dst[n] = src[n] rounded to dtype (round to nearest even).
  void (*from_f32)(const float* src, DType dtype, void* dst, int64_t n);
  // Decode attention over one chunk for a GQA group, reading K/V in their stored dtype once for all
  // the group's query heads. out[g, t] = scale · q[g, :] · keys[t, :]; q: fp32 [group, d];
  // keys: [n_keys, d] in dtype; out: fp32 [group, n_keys].
  void (*scores_group)(const float* q, int64_t group, const void* keys, DType dtype, int64_t n_keys, int64_t d,
                       float scale, float* out);
  // acc[g, :] = acc[g, :] · decay[g] + Σ_t p[g, t] · values[t, :]; p: fp32 [group, n_values];
  // values: [n_values, d] in dtype; decay: [group]; acc: fp32 [group, d].
  void (*accumulate_group)(const float* p, int64_t group, const void* values, DType dtype, int64_t n_values,
                           int64_t d, const float* decay, float* acc);
  // max over x[i] for i < n (−inf when n = 0): a score row's softmax shift.
  float (*max_of)(const float* x, int64_t n);
  // x[i] = exp(x[i] - shift) for i < n; returns Σ x[i] (the softmax numerator and its sum).
  float (*exp_shifted)(float* x, int64_t n, float shift);
  // out[i] = exp(x[i] − shift) rounded to bf16 for i < n; returns the sum of the values before rounding:
  // exp_shifted and the rounding of prefill attention's probabilities in one pass, out bf16 [n]. Null in
  // every set but the AVX-512 one on a CPU with AVX512_BF16.
  float (*exp_shifted_bf16)(const float* x, int64_t n, float shift, uint16_t* out);
  // out[i] = silu(gate[i]) · up[i] for i < n (out may equal gate).
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
  // out[j] = Σ_i max(q[i]·digests[j, 0, i], q[i]·digests[j, 1, i]) for j < n_pages.
  // digests: fp32 [n_pages, 2, d].
  void (*bound_scores)(const float* q, const float* digests, int64_t n_pages, int64_t d, float* out);
};

// For the SIMD bf16 matvecs, which split each `block` of bf16 weights into its even and odd elements:
// xp[j, b + e] = x[j, b + 2e] and xp[j, b + block/2 + e] = x[j, b + 2e + 1] for every whole block b of
// each of the n rows of x [n, k] (the tail past the last whole block is left out).
void deinterleave_pairs(const float* x, int64_t n, int64_t k, int64_t block, float* xp);

// The pair layout gemm_bf16_pairs reads B in: element (k, j) of B at packed[((k / 2) * n_pad + j) * 2 + k % 2],
// n_pad = packed_columns(n), so one 32-bit lane holds the pair (2p, 2p + 1) of one column, as VDPBF16PS
// multiplies it by a pair of a row of A.
inline int64_t packed_columns(int64_t n) { return (n + 15) / 16 * 16; }
// B given as the rows of its transpose (attention's keys, B = keysᵀ): writes columns [col0, col0 + n_cols)
// of the packed B, B[k, col0 + j] = rows[j * ld + k] for k < k_len (even); rows: bf16 [n_cols, ld].
void pack_pairs_from_rows(const uint16_t* rows, int64_t ld, int64_t n_cols, int64_t k_len, int64_t col0, int64_t n_pad,
                          uint16_t* packed);
// B given as its own rows (attention's values): writes rows [k0, k0 + n_rows) of the packed B,
// B[k0 + t, j] = src[t * ld + j] for j < n_cols; src: bf16 [n_rows, ld].
void pack_pairs_from_columns(const uint16_t* src, int64_t ld, int64_t n_rows, int64_t n_cols, int64_t k0, int64_t n_pad,
                             uint16_t* packed);

const CpuPrimitives& cpu_primitives();
const CpuPrimitives& scalar_primitives();
const CpuPrimitives* avx2_primitives();  // nullptr when this CPU lacks AVX2, FMA or F16C
// The AVX2 set with the bf16 matvecs in AVX-512; nullptr when this CPU lacks AVX-512F (or the AVX2 set).
const CpuPrimitives* avx512_primitives();
// The matvec_bf16_dot of the AVX-512 set (primitives_avx512_bf16.cc); call only where the CPU has
// AVX512_BF16.
void matvec_bf16_dot_avx512(const uint16_t* x, int64_t n, const uint16_t* w, int64_t k, int64_t rows, float* y,
                            int64_t ldy);
// The gemm_bf16_pairs of the AVX-512 set (primitives_avx512_bf16.cc), under the same condition.
void gemm_bf16_pairs_avx512(const uint16_t* a, int64_t lda, const uint16_t* b_packed, int64_t m, int64_t n, int64_t k,
                            float* c, int64_t ldc, bool accumulate);
// The exp_shifted_bf16 of the AVX-512 set (primitives_avx512_bf16.cc), under the same condition.
float exp_shifted_bf16_avx512(const float* x, int64_t n, float shift, uint16_t* out);

}  // namespace freekv
