// AVX-512 primitives: the decode matvec over bf16 weights widened to fp32 (the bf16-arithmetic one is in
// primitives_avx512_bf16.cc), whose batched form (2–8 activation rows) is
// bound by arithmetic under AVX2 (about 64 GFLOP/s on two Zen 4 cores against 95–119 here, and 1.2×
// faster at one row; the measurements are in bench/README.md). Everything else is the AVX2 set's. This
// translation unit alone is compiled with -mavx512f; avx512_primitives() checks the CPU first.
#include <immintrin.h>

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
void matvec_bf16_tile(const float* xp, const float* x, const uint16_t* w, int64_t k, int64_t r0, float* y,
                      int64_t ldy) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm512_setzero_ps();
  const int64_t k32 = k & ~int64_t(31);
  const __m512i hi_mask = _mm512_set1_epi32(int(0xffff0000u));
  for (int64_t i = 0; i < k32; i += 32) {
    __m512 x_even[N], x_odd[N];
    for (int j = 0; j < N; ++j) {
      x_even[j] = _mm512_loadu_ps(xp + j * k + i);
      x_odd[j] = _mm512_loadu_ps(xp + j * k + i + 16);
    }
    for (int r = 0; r < R; ++r) {
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
  for (; r + R <= rows; r += R) matvec_bf16_tile<N, R>(xp, x, w, k, r, y, ldy);
  for (; r < rows; ++r) matvec_bf16_tile<N, 1>(xp, x, w, k, r, y, ldy);
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
    set.name = "avx512";
    set.matvec = matvec_avx512;
    const bool bf16 = __builtin_cpu_supports("avx512bf16");
    set.matvec_bf16_dot = bf16 ? matvec_bf16_dot_avx512 : nullptr;
    set.gemm_bf16_pairs = bf16 ? gemm_bf16_pairs_avx512 : nullptr;
    set.exp_shifted_bf16 = bf16 ? exp_shifted_bf16_avx512 : nullptr;
    return &set;
  }();
  return chosen;
}

}  // namespace freekv
