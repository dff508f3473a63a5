// Prefill-sized matrix products with bf16 weights through oneDNN's bf16 matmul: kernels/cpu/matmul.cc
// takes it for n > 8 rows and bf16 weights in bf16 arithmetic (ops.h matmul_arithmetic).
#pragma once

#include <cstdint>

namespace freekv {

// y[j * ldy + r] = Σ_i x[j, i] · w[r, i] for j < n, r < m: x [n, k] and w [m, k] in bf16 (x already
// rounded), products summed in fp32, on the calling thread alone (matmul() splits the rows of w over its
// pool; an OpenMP team would leave threads spinning on the cores the pool needs next). The weights are
// used as stored: oneDNN's packed layout ran 8% faster at 512 rows (bench/results/cpu-prefill-*.json)
// and would need a second copy of every weight. Returns false, writing nothing, where this path does
// not run: the CPU lacks native bf16 arithmetic (avx512_bf16; oneDNN would emulate it, slower than the
// fp32 BLAS path), or oneDNN has no kernel for it (DNNL_MAX_CPU_ISA below AVX-512).
bool matmul_bf16_onednn(const uint16_t* x, const uint16_t* w, float* y, int64_t n, int64_t k, int64_t m, int64_t ldy);

// Whether matmul_bf16_onednn runs on this machine (it answers for every shape alike).
bool matmul_bf16_onednn_runs();

}  // namespace freekv
