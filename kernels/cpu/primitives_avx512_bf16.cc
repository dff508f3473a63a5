// bf16 arithmetic with AVX512_BF16's VDPBF16PS: the decode matvec (activations already rounded to bf16,
// weights as stored) and the small matrix products of prefill attention. One instruction multiplies 32 bf16 pairs and adds each pair's sum into an fp32
// lane, where the widening matvec (primitives_avx512.cc) spends a shift or mask and two fp32 FMAs on
// the same 32 weights: at 4–8 activation rows that arithmetic, not reading the weights, bounds the
// widening form on two Zen 4 threads (bench/README.md). This translation unit alone is compiled with
// -mavx512bf16; avx512_primitives() checks the CPU before pointing at it.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <iterator>

#include "kernels/cpu/exp_poly.h"
#include "kernels/cpu/primitives.h"

namespace freekv {
namespace {

// R weight rows against N activation rows, 32 elements a step. bf16 pairs (2i, 2i + 1) sit in one
// 32-bit lane of both x and w, which is the pairing VDPBF16PS multiplies, so neither is rearranged.
// The N rows' x vectors are loaded once per step for all R weight rows.
template <int N, int R>
void dot_tile(const uint16_t* x, const uint16_t* w, int64_t k, int64_t r0, int64_t rows, float* y, int64_t ldy) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = _mm512_setzero_ps();
  // The rows two tiles on, fetched a line per step while this tile computes: a 4 KiB row (k = 2048) is
  // a page of its own, where the hardware's stream prefetcher starts over. At four activation rows on
  // the Zen 5 VM this took a 32768-row product from 1.7× the one-row time to 1.25× (2 threads).
  const uint16_t* ahead[R];
  for (int r = 0; r < R; ++r) ahead[r] = w + std::min(r0 + 2 * R + r, rows - 1) * k;
  const int64_t k32 = k & ~int64_t(31);
  for (int64_t i = 0; i < k32; i += 32) {
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = (__m512bh)_mm512_loadu_si512(x + j * k + i);
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead[r] + i), _MM_HINT_T0);
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
  for (; r + R <= rows; r += R) dot_tile<N, R>(x, w, k, r, rows, y, ldy);
  for (; r < rows; ++r) dot_tile<N, 1>(x, w, k, r, rows, y, ldy);
}

// Five to eight activation rows: more than a tile of six weight rows has registers for, and two weight
// rows a tile (all the registers allow at eight) computed at a third of the four-row tile's rate. Each
// tile of six weight rows runs for the first four activation rows and again for the rest, the second
// time from L1.
template <int N>
void dot_rows_twice(const uint16_t* x, const uint16_t* w, int64_t k, int64_t rows, float* y, int64_t ldy) {
  static_assert(N > 4 && N <= 8);
  constexpr int R = 6;
  int64_t r = 0;
  for (; r + R <= rows; r += R) {
    dot_tile<4, R>(x, w, k, r, rows, y, ldy);
    dot_tile<N - 4, R>(x + 4 * k, w, k, r, rows, y + 4 * ldy, ldy);
  }
  for (; r < rows; ++r) {
    dot_tile<4, 1>(x, w, k, r, rows, y, ldy);
    dot_tile<N - 4, 1>(x + 4 * k, w, k, r, rows, y + 4 * ldy, ldy);
  }
}

// C[i0 + r, j0 + 16v + lane] for r < R, v < NV: a's R rows (a pair of k per broadcast 32-bit lane) against
// NV vectors of 16 packed columns, over all k/2 pairs. Columns at or past n are neither read from C nor
// written.
template <int R, int NV>
void gemm_tile(const uint16_t* a, int64_t lda, const uint16_t* b_packed, int64_t n_pad, int64_t k_pairs, int64_t i0,
               int64_t j0, int64_t n, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k_pairs; ++p) {
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b_packed + (p * n_pad + j0 + 16 * v) * 2);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + (i0 + r) * lda + 2 * p, sizeof pair);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int64_t cols = std::min<int64_t>(16, n - j0 - 16 * v);
    const __mmask16 mask = __mmask16((1u << cols) - 1u);
    for (int r = 0; r < R; ++r) {
      float* dst = c + (i0 + r) * ldc + j0 + 16 * v;
      __m512 out = acc[r][v];
      if (accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, dst));
      _mm512_mask_storeu_ps(dst, mask, out);
    }
  }
}

constexpr int kTileRows = 6;     // rows of A per tile: 6 × 4 accumulators, 4 B vectors and one A broadcast
constexpr int kTileVectors = 4;  // 64 columns of C per tile

using GemmTile = void (*)(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                          float*, int64_t, bool);

template <int R>
constexpr GemmTile tile_for(int nv) {
  return nv == 1 ? gemm_tile<R, 1> : nv == 2 ? gemm_tile<R, 2> : nv == 3 ? gemm_tile<R, 3> : gemm_tile<R, 4>;
}

GemmTile gemm_tile_for(int rows, int nv) {
  switch (rows) {
    case 1: return tile_for<1>(nv);
    case 2: return tile_for<2>(nv);
    case 3: return tile_for<3>(nv);
    case 4: return tile_for<4>(nv);
    case 5: return tile_for<5>(nv);
    default: return tile_for<6>(nv);
  }
}

// exp(x) for x ≤ 0, sixteen lanes; the algorithm and its constants are in exp_poly.h.
__m512 exp_nonpositive16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(kExpFloor));
  const __m512 k =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2High), x);
  const __m512 rr = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Low), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (size_t i = 1; i < std::size(kExpPoly); ++i) p = _mm512_fmadd_ps(p, rr, _mm512_set1_ps(kExpPoly[i]));
  const __m512i pow2k = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  const __m512 out = _mm512_mul_ps(p, _mm512_castsi512_ps(pow2k));
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpFloor), _CMP_GT_OQ), out);
}

}  // namespace

float exp_shifted_bf16_avx512(const float* x, int64_t n, float shift, uint16_t* out) {
  const __m512 sv = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 live = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 shifted = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + i), sv);
    const __m512 e = _mm512_maskz_mov_ps(live, exp_nonpositive16(shifted));
    sum = _mm512_add_ps(sum, e);
    const __m256i rounded = (__m256i)_mm512_cvtneps_pbh(e);  // VCVTNEPS2BF16: round to nearest even
    if (live == 0xffff) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), rounded);
    } else {  // the tail, through a whole vector: no masked 16-bit store without AVX512BW/VL
      alignas(32) uint16_t lanes[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), rounded);
      std::memcpy(out + i, lanes, size_t(n - i) * sizeof(uint16_t));
    }
  }
  return _mm512_reduce_add_ps(sum);
}

void gemm_bf16_pairs_avx512(const uint16_t* a, int64_t lda, const uint16_t* b_packed, int64_t m, int64_t n, int64_t k,
                            float* c, int64_t ldc, bool accumulate) {
  const int64_t n_pad = packed_columns(n), k_pairs = k / 2;
  // Column blocks outside, rows inside: one block's packed B (k/2 × 64 pairs) stays in L1 for all rows.
  for (int64_t j0 = 0; j0 < n; j0 += 16 * kTileVectors) {
    const int nv = int(std::min<int64_t>(kTileVectors, (n - j0 + 15) / 16));
    for (int64_t i0 = 0; i0 < m; i0 += kTileRows) {
      const int rows = int(std::min<int64_t>(kTileRows, m - i0));
      gemm_tile_for(rows, nv)(a, lda, b_packed, n_pad, k_pairs, i0, j0, n, c, ldc, accumulate);
    }
  }
}

void matvec_bf16_dot_avx512(const uint16_t* x, int64_t n, const uint16_t* w, int64_t k, int64_t rows, float* y,
                            int64_t ldy) {
  // Weight rows per tile: R·N accumulators, N activation vectors and one weight vector within the 32
  // registers.
  switch (n) {
    case 1: dot_rows<1, 8>(x, w, k, rows, y, ldy); break;
    case 2: dot_rows<2, 8>(x, w, k, rows, y, ldy); break;
    case 3: dot_rows<3, 6>(x, w, k, rows, y, ldy); break;
    case 4: dot_rows<4, 6>(x, w, k, rows, y, ldy); break;
    case 5: dot_rows_twice<5>(x, w, k, rows, y, ldy); break;
    case 6: dot_rows_twice<6>(x, w, k, rows, y, ldy); break;
    case 7: dot_rows_twice<7>(x, w, k, rows, y, ldy); break;
    default: dot_rows_twice<8>(x, w, k, rows, y, ldy); break;
  }
}

}  // namespace freekv
