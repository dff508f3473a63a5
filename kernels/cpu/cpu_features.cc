#include <cstdlib>
#include <cstring>

#include "kernels/cpu/primitives.h"

namespace freekv {

void deinterleave_pairs(const float* x, int64_t n, int64_t k, int64_t block, float* xp) {
  const int64_t whole = k - k % block, half = block / 2;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t b = 0; b < whole; b += block) {
      for (int64_t e = 0; e < half; ++e) {
        xp[j * k + b + e] = x[j * k + b + 2 * e];
        xp[j * k + b + half + e] = x[j * k + b + 2 * e + 1];
      }
    }
  }
}

void pack_pairs_from_rows(const uint16_t* rows, int64_t ld, int64_t n_cols, int64_t k_len, int64_t col0, int64_t n_pad,
                          uint16_t* packed) {
  for (int64_t j = 0; j < n_cols; ++j) {
    const uint16_t* row = rows + j * ld;
    for (int64_t k = 0; k < k_len; k += 2) {
      uint16_t* lane = packed + ((k / 2) * n_pad + col0 + j) * 2;
      lane[0] = row[k];
      lane[1] = row[k + 1];
    }
  }
}

void pack_pairs_from_columns(const uint16_t* src, int64_t ld, int64_t n_rows, int64_t n_cols, int64_t k0, int64_t n_pad,
                             uint16_t* packed) {
  for (int64_t t = 0; t < n_rows; ++t) {
    const int64_t k = k0 + t;
    uint16_t* out = packed + (k / 2) * n_pad * 2 + k % 2;
    for (int64_t j = 0; j < n_cols; ++j) out[j * 2] = src[t * ld + j];
  }
}

const CpuPrimitives& cpu_primitives() {
  static const CpuPrimitives* chosen = [] {
    const char* forced = std::getenv("FREEKV_SIMD");
    if (forced != nullptr && std::strcmp(forced, "scalar") == 0) return &scalar_primitives();
    const CpuPrimitives* avx512 = avx512_primitives();
    const CpuPrimitives* avx2 = avx2_primitives();
    if (avx512 != nullptr && (forced == nullptr || std::strcmp(forced, "avx2") != 0)) return avx512;
    return avx2 != nullptr ? avx2 : &scalar_primitives();
  }();
  return *chosen;
}

}  // namespace freekv
