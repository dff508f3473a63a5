// AVX2 + FMA + F16C primitives. This translation unit alone is compiled with -mavx2 -mfma -mf16c;
// avx2_primitives() checks the CPU before handing any of it out.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <vector>

#include "kernels/cpu/exp_poly.h"
#include "kernels/cpu/primitives.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

// Eight consecutive elements of a weight or KV buffer, widened to fp32.
template <DType T>
inline __m256 load8(const void* base, int64_t i) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    if constexpr (T == DType::kBF16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R weight rows against N activation rows, one pass over the weights: R·N independent accumulators
// keep the FMA pipes busy while the loads stream.
template <DType T, int N, int R>
void matvec_tile(const float* x, const void* w, int64_t k, int64_t r0, float* y, int64_t ldy) {
  __m256 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t(7);
  for (int64_t i = 0; i < k8; i += 8) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_loadu_ps(x + j * k + i);
    for (int r = 0; r < R; ++r) {
      __m256 wv = load8<T>(w, (r0 + r) * k + i);
      for (int j = 0; j < N; ++j) acc[r][j] = _mm256_fmadd_ps(wv, xv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < N; ++j) {
      float s = hsum(acc[r][j]);
      for (int64_t i = k8; i < k; ++i) s += x[j * k + i] * load_as_f32(w, T, size_t((r0 + r) * k + i));
      y[j * ldy + r0 + r] = s;
    }
  }
}

template <DType T, int N, int R>
void matvec_rows(const float* x, const void* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + R <= rows; r += R) matvec_tile<T, N, R>(x, w, k, r, y, ldy);
  for (; r < rows; ++r) matvec_tile<T, N, 1>(x, w, k, r, y, ldy);
}

// bf16 weights without widening shuffles: 16 bf16 loaded as eight 32-bit lanes hold the even elements
// in their low halves and the odd ones in their high halves, so a shift gives the even elements as
// fp32 and a mask the odd ones (two cheap ALU ops per 16 weights instead of two cross-lane converts
// per 8). x is de-interleaved to match once per call: xp[16b + j] = x[16b + 2j], xp[16b + 8 + j] =
// x[16b + 2j + 1]. This keeps a core's decode matvec bound by memory, not by the widening.
template <int N, int R>
void matvec_bf16_tile(const float* xp, const float* x, const void* w, int64_t k, int64_t r0, float* y,
                      int64_t ldy) {
  __m256 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm256_setzero_ps();
  const int64_t k16 = k & ~int64_t(15);
  const __m256i hi_mask = _mm256_set1_epi32(int(0xffff0000u));
  for (int64_t i = 0; i < k16; i += 16) {
    for (int r = 0; r < R; ++r) {
      const __m256i wv = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + (r0 + r) * k + i));
      const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(wv, 16));
      const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(wv, hi_mask));
      for (int j = 0; j < N; ++j) {
        acc[r][j] = _mm256_fmadd_ps(even, _mm256_loadu_ps(xp + j * k + i), acc[r][j]);
        acc[r][j] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(xp + j * k + i + 8), acc[r][j]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < N; ++j) {
      float s = hsum(acc[r][j]);
      for (int64_t i = k16; i < k; ++i) s += x[j * k + i] * load_as_f32(w, DType::kBF16, size_t((r0 + r) * k + i));
      y[j * ldy + r0 + r] = s;
    }
  }
}

template <int N, int R>
void matvec_bf16_rows(const float* xp, const float* x, const void* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + R <= rows; r += R) matvec_bf16_tile<N, R>(xp, x, w, k, r, y, ldy);
  for (; r < rows; ++r) matvec_bf16_tile<N, 1>(xp, x, w, k, r, y, ldy);
}

void matvec_bf16(const float* x, int64_t n, const void* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  thread_local std::vector<float> xp;
  xp.resize(size_t(n * k));
  deinterleave_pairs(x, n, k, 16, xp.data());
  switch (n) {
    case 1: matvec_bf16_rows<1, 4>(xp.data(), x, w, k, rows, y, ldy); break;
    case 2: matvec_bf16_rows<2, 4>(xp.data(), x, w, k, rows, y, ldy); break;
    case 3: matvec_bf16_rows<3, 2>(xp.data(), x, w, k, rows, y, ldy); break;
    case 4: matvec_bf16_rows<4, 2>(xp.data(), x, w, k, rows, y, ldy); break;
    case 5: matvec_bf16_rows<5, 1>(xp.data(), x, w, k, rows, y, ldy); break;
    case 6: matvec_bf16_rows<6, 1>(xp.data(), x, w, k, rows, y, ldy); break;
    case 7: matvec_bf16_rows<7, 1>(xp.data(), x, w, k, rows, y, ldy); break;
    default: matvec_bf16_rows<8, 1>(xp.data(), x, w, k, rows, y, ldy); break;
  }
}

template <DType T>
void matvec_typed(const float* x, int64_t n, const void* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  // Accumulator budget: R·N ≤ 8 of the 16 ymm registers.
  switch (n) {
    case 1: matvec_rows<T, 1, 4>(x, w, k, rows, y, ldy); break;
    case 2: matvec_rows<T, 2, 4>(x, w, k, rows, y, ldy); break;
    case 3: matvec_rows<T, 3, 2>(x, w, k, rows, y, ldy); break;
    case 4: matvec_rows<T, 4, 2>(x, w, k, rows, y, ldy); break;
    case 5: matvec_rows<T, 5, 1>(x, w, k, rows, y, ldy); break;
    case 6: matvec_rows<T, 6, 1>(x, w, k, rows, y, ldy); break;
    case 7: matvec_rows<T, 7, 1>(x, w, k, rows, y, ldy); break;
    default: matvec_rows<T, 8, 1>(x, w, k, rows, y, ldy); break;
  }
}

void matvec_avx2(const float* x, int64_t n, const void* w, DType w_dtype, int64_t k, int64_t rows,
                 float* y, int64_t ldy) {
  switch (w_dtype) {
    case DType::kF32: matvec_typed<DType::kF32>(x, n, w, k, rows, y, ldy); break;
    case DType::kF16: matvec_typed<DType::kF16>(x, n, w, k, rows, y, ldy); break;
    case DType::kBF16: matvec_bf16(x, n, w, k, rows, y, ldy); break;
  }
}

template <DType T>
void to_f32_typed(const void* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(src, i));
  for (; i < n; ++i) dst[i] = load_as_f32(src, T, size_t(i));
}

void to_f32_avx2(const void* src, DType dtype, float* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32: to_f32_typed<DType::kF32>(src, dst, n); break;
    case DType::kF16: to_f32_typed<DType::kF16>(src, dst, n); break;
    case DType::kBF16: to_f32_typed<DType::kBF16>(src, dst, n); break;
  }
}

// Eight fp32 to bf16 with round-to-nearest-even; NaN stays a quiet NaN (same bits as f32_to_bf16).
inline __m128i f32x8_to_bf16(__m256 v) {
  __m256i bits = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
  __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  __m256i r = _mm256_blendv_epi8(rounded, quiet, is_nan);
  // Pack the eight 32-bit lanes (values < 2^16) into 16-bit: packus works per 128-bit half.
  __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
  return _mm_packus_epi32(lo, hi);
}

void from_f32_avx2(const float* src, DType dtype, void* dst, int64_t n) {
  int64_t i = 0;
  if (dtype == DType::kF32) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(static_cast<float*>(dst) + i, _mm256_loadu_ps(src + i));
  } else if (dtype == DType::kBF16) {
    auto* out = static_cast<uint16_t*>(dst);
    for (; i + 8 <= n; i += 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), f32x8_to_bf16(_mm256_loadu_ps(src + i)));
    }
  } else {
    auto* out = static_cast<uint16_t*>(dst);
    for (; i + 8 <= n; i += 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    }
  }
  for (; i < n; ++i) store_from_f32(dst, dtype, size_t(i), src[i]);
}

// Scores of up to 4 query heads against keys read in their stored dtype: each key row is widened once
// and feeds every head of the group.
template <DType T, int G>
void scores_group_tile(const float* q, const void* keys, int64_t n_keys, int64_t d, float scale, float* out,
                       int64_t out_stride) {
  const int64_t d8 = d & ~int64_t(7);
  for (int64_t t = 0; t < n_keys; ++t) {
    __m256 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
    for (int64_t i = 0; i < d8; i += 8) {
      const __m256 kv = load8<T>(keys, t * d + i);
      for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + g * d + i), kv, acc[g]);
    }
    for (int g = 0; g < G; ++g) {
      float s = hsum(acc[g]);
      for (int64_t i = d8; i < d; ++i) s += q[g * d + i] * load_as_f32(keys, T, size_t(t * d + i));
      out[g * out_stride + t] = s * scale;
    }
  }
}

template <DType T>
void scores_group_typed(const float* q, int64_t group, const void* keys, int64_t n_keys, int64_t d, float scale,
                        float* out) {
  int64_t g = 0;
  for (; g + 4 <= group; g += 4) scores_group_tile<T, 4>(q + g * d, keys, n_keys, d, scale, out + g * n_keys, n_keys);
  for (; g < group; ++g) scores_group_tile<T, 1>(q + g * d, keys, n_keys, d, scale, out + g * n_keys, n_keys);
}

void scores_group_avx2(const float* q, int64_t group, const void* keys, DType dtype, int64_t n_keys, int64_t d,
                       float scale, float* out) {
  switch (dtype) {
    case DType::kF32: scores_group_typed<DType::kF32>(q, group, keys, n_keys, d, scale, out); break;
    case DType::kF16: scores_group_typed<DType::kF16>(q, group, keys, n_keys, d, scale, out); break;
    case DType::kBF16: scores_group_typed<DType::kBF16>(q, group, keys, n_keys, d, scale, out); break;
  }
}

// Weighted values for up to 4 heads, 16 output columns at a time (G × 2 accumulators in registers);
// each value row is widened once per column block and feeds every head.
template <DType T, int G>
void accumulate_group_tile(const float* p, int64_t p_stride, const void* values, int64_t n_values, int64_t d,
                           const float* decay, float* acc) {
  const int64_t d16 = d & ~int64_t(15);
  for (int64_t c = 0; c < d16; c += 16) {
    __m256 a0[G], a1[G];
    for (int g = 0; g < G; ++g) {
      const __m256 dv = _mm256_set1_ps(decay[g]);
      a0[g] = _mm256_mul_ps(_mm256_loadu_ps(acc + g * d + c), dv);
      a1[g] = _mm256_mul_ps(_mm256_loadu_ps(acc + g * d + c + 8), dv);
    }
    for (int64_t t = 0; t < n_values; ++t) {
      const __m256 v0 = load8<T>(values, t * d + c), v1 = load8<T>(values, t * d + c + 8);
      for (int g = 0; g < G; ++g) {
        const __m256 pt = _mm256_set1_ps(p[g * p_stride + t]);
        a0[g] = _mm256_fmadd_ps(pt, v0, a0[g]);
        a1[g] = _mm256_fmadd_ps(pt, v1, a1[g]);
      }
    }
    for (int g = 0; g < G; ++g) {
      _mm256_storeu_ps(acc + g * d + c, a0[g]);
      _mm256_storeu_ps(acc + g * d + c + 8, a1[g]);
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int64_t i = d16; i < d; ++i) {
      float a = acc[g * d + i] * decay[g];
      for (int64_t t = 0; t < n_values; ++t) a += p[g * p_stride + t] * load_as_f32(values, T, size_t(t * d + i));
      acc[g * d + i] = a;
    }
  }
}

template <DType T>
void accumulate_group_typed(const float* p, int64_t group, const void* values, int64_t n_values, int64_t d,
                            const float* decay, float* acc) {
  int64_t g = 0;
  for (; g + 4 <= group; g += 4)
    accumulate_group_tile<T, 4>(p + g * n_values, n_values, values, n_values, d, decay + g, acc + g * d);
  for (; g < group; ++g)
    accumulate_group_tile<T, 1>(p + g * n_values, n_values, values, n_values, d, decay + g, acc + g * d);
}

void accumulate_group_avx2(const float* p, int64_t group, const void* values, DType dtype, int64_t n_values,
                           int64_t d, const float* decay, float* acc) {
  switch (dtype) {
    case DType::kF32: accumulate_group_typed<DType::kF32>(p, group, values, n_values, d, decay, acc); break;
    case DType::kF16: accumulate_group_typed<DType::kF16>(p, group, values, n_values, d, decay, acc); break;
    case DType::kBF16: accumulate_group_typed<DType::kBF16>(p, group, values, n_values, d, decay, acc); break;
  }
}

// exp(x) for x ≤ 0 (softmax arguments); the algorithm and its constants are in exp_poly.h.
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(kExpFloor));
  const __m256 k =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2High), x);
  const __m256 rr = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Low), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (size_t i = 1; i < std::size(kExpPoly); ++i) p = _mm256_fmadd_ps(p, rr, _mm256_set1_ps(kExpPoly[i]));
  const __m256i pow2k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  const __m256 out = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2k));
  return _mm256_and_ps(out, _mm256_cmp_ps(x, _mm256_set1_ps(kExpFloor), _CMP_GT_OQ));
}

float exp_shifted_avx2(float* x, int64_t n, float shift) {
  const __m256 sv = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), sv));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - shift));
  return sum;
}

// out[i] = silu(gate[i]) · up[i], silu(g) = g · sigmoid(g), with e = exp(−|g|) so the exponential's
// argument is never positive: sigmoid(g) = 1 / (1 + e) for g ≥ 0 and e / (1 + e) below.
void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.f), sign = _mm256_set1_ps(-0.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_nonpositive(_mm256_or_ps(g, sign));  // exp(−|g|)
    const __m256 numerator = _mm256_blendv_ps(one, e, g);     // g's sign bit picks e
    const __m256 sigmoid = _mm256_div_ps(numerator, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = swiglu_value(gate[i], up[i]);
}

float max_of_avx2(const float* x, int64_t n) {
  // Two independent chains, so the loop is bound by loads rather than by max's latency.
  __m256 m0 = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  m0 = _mm256_max_ps(m0, m1);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m0);
  float m = *std::max_element(lanes, lanes + 8);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

void bound_scores_avx2(const float* q, const float* digests, int64_t n_pages, int64_t d, float* out) {
  const int64_t d8 = d & ~int64_t(7);
  for (int64_t j = 0; j < n_pages; ++j) {
    const float* u = digests + j * 2 * d;
    const float* l = u + d;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < d8; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      acc = _mm256_add_ps(acc, _mm256_max_ps(_mm256_mul_ps(qv, _mm256_loadu_ps(u + i)),
                                             _mm256_mul_ps(qv, _mm256_loadu_ps(l + i))));
    }
    float s = hsum(acc);
    for (int64_t i = d8; i < d; ++i) s += std::max(q[i] * u[i], q[i] * l[i]);
    out[j] = s;
  }
}

const CpuPrimitives kAvx2 = {"avx2", matvec_avx2, nullptr, nullptr, to_f32_avx2, from_f32_avx2,
                             scores_group_avx2, accumulate_group_avx2, max_of_avx2, exp_shifted_avx2, nullptr, swiglu_avx2,
                             bound_scores_avx2};

}  // namespace

const CpuPrimitives* avx2_primitives() {
  __builtin_cpu_init();
  bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok ? &kAvx2 : nullptr;
}

}  // namespace freekv
