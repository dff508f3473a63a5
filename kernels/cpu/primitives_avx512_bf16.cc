// The decode matvec in bf16 arithmetic (AVX512_BF16's VDPBF16PS): activations already rounded to bf16,
// weights as stored. One instruction multiplies 32 bf16 pairs and adds each pair's sum into an fp32
// lane, where the widening matvec (primitives_avx512.cc) spends a shift or mask and two fp32 FMAs on
// the same 32 weights: at 4–8 activation rows that arithmetic, not reading the weights, bounds the
// widening form on two Zen 4 threads (bench/README.md). This translation unit alone is compiled with
// -mavx512bf16; avx512_primitives() checks the CPU before pointing at it.
#include <immintrin.h>

#include "kernels/cpu/primitives.h"

namespace freekv {
namespace {

// R weight rows against N activation rows, 32 elements a step. bf16 pairs (2i, 2i + 1) sit in one
// 32-bit lane of both x and w, which is the pairing VDPBF16PS multiplies, so neither is rearranged.
// The N rows' x vectors are loaded once per step for all R weight rows.
template <int N, int R>
void dot_tile(const uint16_t* x, const uint16_t* w, int64_t k, int64_t r0, float* y, int64_t ldy) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm512_setzero_ps();
  const int64_t k32 = k & ~int64_t(31);
  for (int64_t i = 0; i < k32; i += 32) {
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = (__m512bh)_mm512_loadu_si512(x + j * k + i);
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + (r0 + r) * k + i);
      for (int j = 0; j < N; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv, xv[j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < N; ++j) {
      float s = _mm512_reduce_add_ps(acc[r][j]);
      for (int64_t i = k32; i < k; ++i) s += bf16_to_f32(x[j * k + i]) * bf16_to_f32(w[(r0 + r) * k + i]);
      y[j * ldy + r0 + r] = s;
    }
  }
}

template <int N, int R>
void dot_rows(const uint16_t* x, const uint16_t* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + R <= rows; r += R) dot_tile<N, R>(x, w, k, r, y, ldy);
  for (; r < rows; ++r) dot_tile<N, 1>(x, w, k, r, y, ldy);
}

}  // namespace

void matvec_bf16_dot_avx512(const uint16_t* x, int64_t n, const uint16_t* w, int64_t k, int64_t rows, float* y,
                            int64_t ldy) {
  // Weight rows per tile: R·N accumulators, N activation vectors and one weight vector within the 32
  // registers.
  switch (n) {
    case 1: dot_rows<1, 8>(x, w, k, rows, y, ldy); break;
    case 2: dot_rows<2, 8>(x, w, k, rows, y, ldy); break;
    case 3: dot_rows<3, 6>(x, w, k, rows, y, ldy); break;
    case 4: dot_rows<4, 6>(x, w, k, rows, y, ldy); break;
    case 5: dot_rows<5, 4>(x, w, k, rows, y, ldy); break;
    case 6: dot_rows<6, 4>(x, w, k, rows, y, ldy); break;
    case 7: dot_rows<7, 3>(x, w, k, rows, y, ldy); break;
    default: dot_rows<8, 2>(x, w, k, rows, y, ldy); break;
  }
}

}  // namespace freekv
