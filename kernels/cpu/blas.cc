#include "kernels/cpu/blas.h"

// OpenBLAS only; other BLAS builds lack the symbol and run single-threaded already.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace freekv {

void use_single_threaded_blas() {
  static const bool done = [] {
    if (openblas_set_num_threads != nullptr) openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

}  // namespace freekv
