// OpenBLAS as the kernels call it: from several of our threads at once, each call single-threaded.
#pragma once

namespace freekv {

// Stops OpenBLAS from starting threads of its own (our thread pool splits the work); idempotent.
void use_single_threaded_blas();

}  // namespace freekv
