#include <cstdlib>
#include <cstring>

#include "kernels/cpu/primitives.h"

namespace freekv {

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
