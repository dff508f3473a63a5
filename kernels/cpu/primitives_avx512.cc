// AVX-512 primitives: the decode matvec over bf16 weights widened to fp32 (the bf16-arithmetic one is in
// primitives_avx512_bf16.cc), whose batched form (2–8 activation rows) is
// bound by arithmetic under AVX2 (about 64 GFLOP/s on two Zen 4 cores against 95–119 here, and 1.2×
// faster at one row; the measurements are in bench/README.md), and decode attention's two products
// per page. Everything else is the AVX2 set's. This
// translation unit alone is compiled with -mavx512f; avx512_primitives() checks the CPU first.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/primitives.h"

namespace freekv {
namespace {

// R weight rows against N activation rows over 32 bf16 weights per step. 32 bf16 loaded as sixteen
// 32-bit lanes hold the even elements in their low halves and the odd ones in their high halves: a
// shift gives the even ones as fp32, a mask the odd ones. xp is x de-interleaved to match:
// xp[32b + j] = x[32b + 2j], xp[32b + 16 + j] = x[32b + 2j + 1]. The N rows' x vectors are loaded
// once per step and serve all R weight rows (32 registers hold R·N accumulators beside them).
template <int N, int R>
void matvec_bf16_tile(const float* xp, const float* x, const uint16_t* w, int64_t k, int64_t r0, int64_t rows,
                      float* y, int64_t ldy) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm512_setzero_ps();
  // The rows two tiles on, a line per step, as in primitives_avx512_bf16.cc's dot_tile (a 4 KiB row is
  // a page of its own, where the stream prefetcher starts over).
  const uint16_t* ahead[R];
  for (int r = 0; r < R; ++r) ahead[r] = w + std::min(r0 + 2 * R + r, rows - 1) * k;
  const int64_t k32 = k & ~int64_t(31);
  const __m512i hi_mask = _mm512_set1_epi32(int(0xffff0000u));
  for (int64_t i = 0; i < k32; i += 32) {
    __m512 x_even[N], x_odd[N];
    for (int j = 0; j < N; ++j) {
      x_even[j] = _mm512_loadu_ps(xp + j * k + i);
      x_odd[j] = _mm512_loadu_ps(xp + j * k + i + 16);
    }
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead[r] + i), _MM_HINT_T0);
      const __m512i wv = _mm512_loadu_si512(w + (r0 + r) * k + i);
      const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(wv, 16));
      const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(wv, hi_mask));
      for (int j = 0; j < N; ++j) {
        acc[r][j] = _mm512_fmadd_ps(even, x_even[j], acc[r][j]);
        acc[r][j] = _mm512_fmadd_ps(odd, x_odd[j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < N; ++j) {
      float s = _mm512_reduce_add_ps(acc[r][j]);
      for (int64_t i = k32; i < k; ++i) s += x[j * k + i] * bf16_to_f32(w[(r0 + r) * k + i]);
      y[j * ldy + r0 + r] = s;
    }
  }
}

template <int N, int R>
void matvec_bf16_rows(const float* xp, const float* x, const uint16_t* w, int64_t k, int64_t rows, float* y,
                      int64_t ldy) {
  int64_t r = 0;
  for (; r + R <= rows; r += R) matvec_bf16_tile<N, R>(xp, x, w, k, r, rows, y, ldy);
  for (; r < rows; ++r) matvec_bf16_tile<N, 1>(xp, x, w, k, r, rows, y, ldy);
}

void matvec_bf16(const float* x, int64_t n, const uint16_t* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  thread_local std::vector<float> xp;
  xp.resize(size_t(n * k));
  deinterleave_pairs(x, n, k, 32, xp.data());
  // Weight rows per tile, by measurement on two Zen 4 cores (1, 4 and 8 activation rows).
  switch (n) {
    case 1: matvec_bf16_rows<1, 8>(xp.data(), x, w, k, rows, y, ldy); break;
    case 2: matvec_bf16_rows<2, 4>(xp.data(), x, w, k, rows, y, ldy); break;
    case 3: matvec_bf16_rows<3, 4>(xp.data(), x, w, k, rows, y, ldy); break;
    case 4: matvec_bf16_rows<4, 4>(xp.data(), x, w, k, rows, y, ldy); break;
    case 5: matvec_bf16_rows<5, 3>(xp.data(), x, w, k, rows, y, ldy); break;
    case 6: matvec_bf16_rows<6, 3>(xp.data(), x, w, k, rows, y, ldy); break;
    case 7: matvec_bf16_rows<7, 3>(xp.data(), x, w, k, rows, y, ldy); break;
    default: matvec_bf16_rows<8, 3>(xp.data(), x, w, k, rows, y, ldy); break;
  }
}

void (*avx2_matvec)(const float*, int64_t, const void*, DType, int64_t, int64_t, float*, int64_t) = nullptr;

// ---- decode attention: one query per head against a page's K/V in their stored dtype ----
// Sixteen lanes where the AVX2 set has eight: 8% less time for four 1K-token sequences' decode
// attention on the Zen 5 VM (13 ms against 14 for 16 layers). Reading the scattered pages bounds it
// more than the arithmetic does (attention.cc prefetch_chunk).

// Sixteen elements of K or V from `offset`, as fp32.
template <DType T>
__m512 load16(const void* p, int64_t offset) {
  if constexpr (T == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + offset);
  } else {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + offset));
    if constexpr (T == DType::kF16) return _mm512_cvtph_ps(half);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
  }
}

// Scores of G heads against each key, sixteen dimensions a step (d a multiple of 16): the key row is
// widened once for all G heads.
template <DType T, int G>
void scores_heads(const float* q, const void* keys, int64_t n_keys, int64_t d, float scale, float* out,
                  int64_t out_stride) {
  for (int64_t t = 0; t < n_keys; ++t) {
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __m512 k = load16<T>(keys, t * d + i);
      for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * d + i), k, acc[g]);
    }
    for (int g = 0; g < G; ++g) out[g * out_stride + t] = _mm512_reduce_add_ps(acc[g]) * scale;
  }
}

// Weighted values of G heads, 64 columns at a time (d a multiple of 64; G × 4 accumulators): each value
// row is widened once for all G heads.
template <DType T, int G>
void accumulate_heads(const float* p, int64_t p_stride, const void* values, int64_t n_values, int64_t d,
                      const float* decay, float* acc) {
  for (int64_t c = 0; c < d; c += 64) {
    __m512 a[G][4];
    for (int g = 0; g < G; ++g) {
      const __m512 dv = _mm512_set1_ps(decay[g]);
      for (int v = 0; v < 4; ++v) a[g][v] = _mm512_mul_ps(_mm512_loadu_ps(acc + g * d + c + 16 * v), dv);
    }
    for (int64_t t = 0; t < n_values; ++t) {
      __m512 row[4];
      for (int v = 0; v < 4; ++v) row[v] = load16<T>(values, t * d + c + 16 * v);
      for (int g = 0; g < G; ++g) {
        const __m512 pt = _mm512_set1_ps(p[g * p_stride + t]);
        for (int v = 0; v < 4; ++v) a[g][v] = _mm512_fmadd_ps(pt, row[v], a[g][v]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(acc + g * d + c + 16 * v, a[g][v]);
  }
}

// The group four heads at a time, then one at a time.
template <DType T>
void scores_group_typed(const float* q, int64_t group, const void* keys, int64_t n_keys, int64_t d, float scale,
                        float* out) {
  int64_t g = 0;
  for (; g + 4 <= group; g += 4) scores_heads<T, 4>(q + g * d, keys, n_keys, d, scale, out + g * n_keys, n_keys);
  for (; g < group; ++g) scores_heads<T, 1>(q + g * d, keys, n_keys, d, scale, out + g * n_keys, n_keys);
}

template <DType T>
void accumulate_group_typed(const float* p, int64_t group, const void* values, int64_t n_values, int64_t d,
                            const float* decay, float* acc) {
  int64_t g = 0;
  for (; g + 4 <= group; g += 4)
    accumulate_heads<T, 4>(p + g * n_values, n_values, values, n_values, d, decay + g, acc + g * d);
  for (; g < group; ++g)
    accumulate_heads<T, 1>(p + g * n_values, n_values, values, n_values, d, decay + g, acc + g * d);
}

void (*avx2_scores_group)(const float*, int64_t, const void*, DType, int64_t, int64_t, float, float*) = nullptr;
void (*avx2_accumulate_group)(const float*, int64_t, const void*, DType, int64_t, int64_t, const float*,
                              float*) = nullptr;

void scores_group_avx512(const float* q, int64_t group, const void* keys, DType dtype, int64_t n_keys, int64_t d,
                         float scale, float* out) {
  if (d % 16 != 0) return avx2_scores_group(q, group, keys, dtype, n_keys, d, scale, out);
  switch (dtype) {
    case DType::kF32: scores_group_typed<DType::kF32>(q, group, keys, n_keys, d, scale, out); break;
    case DType::kF16: scores_group_typed<DType::kF16>(q, group, keys, n_keys, d, scale, out); break;
    case DType::kBF16: scores_group_typed<DType::kBF16>(q, group, keys, n_keys, d, scale, out); break;
  }
}

void accumulate_group_avx512(const float* p, int64_t group, const void* values, DType dtype, int64_t n_values,
                             int64_t d, const float* decay, float* acc) {
  if (d % 64 != 0) return avx2_accumulate_group(p, group, values, dtype, n_values, d, decay, acc);
  switch (dtype) {
    case DType::kF32: accumulate_group_typed<DType::kF32>(p, group, values, n_values, d, decay, acc); break;
    case DType::kF16: accumulate_group_typed<DType::kF16>(p, group, values, n_values, d, decay, acc); break;
    case DType::kBF16: accumulate_group_typed<DType::kBF16>(p, group, values, n_values, d, decay, acc); break;
  }
}

void matvec_avx512(const float* x, int64_t n, const void* w, DType w_dtype, int64_t k, int64_t rows, float* y,
                   int64_t ldy) {
  if (w_dtype == DType::kBF16) {
    matvec_bf16(x, n, static_cast<const uint16_t*>(w), k, rows, y, ldy);
  } else {
    avx2_matvec(x, n, w, w_dtype, k, rows, y, ldy);
  }
}

}  // namespace

const CpuPrimitives* avx512_primitives() {
  static const CpuPrimitives* chosen = []() -> const CpuPrimitives* {
    const CpuPrimitives* avx2 = avx2_primitives();
    __builtin_cpu_init();
    if (avx2 == nullptr || !__builtin_cpu_supports("avx512f")) return nullptr;
    static CpuPrimitives set = *avx2;
    avx2_matvec = avx2->matvec;
    avx2_scores_group = avx2->scores_group;
    avx2_accumulate_group = avx2->accumulate_group;
    set.name = "avx512";
    set.matvec = matvec_avx512;
    set.scores_group = scores_group_avx512;
    set.accumulate_group = accumulate_group_avx512;
    const bool bf16 = __builtin_cpu_supports("avx512bf16");
    set.matvec_bf16_dot = bf16 ? matvec_bf16_dot_avx512 : nullptr;
    set.gemm_bf16_pairs = bf16 ? gemm_bf16_pairs_avx512 : nullptr;
    set.exp_shifted_bf16 = bf16 ? exp_shifted_bf16_avx512 : nullptr;
    return &set;
  }();
  return chosen;
}

}  // namespace freekv
