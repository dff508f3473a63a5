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
