// Prefill-sized matrix products with bf16 weights through oneDNN's bf16 matmul: kernels/cpu/matmul.cc
// takes it for n > 8 rows and bf16 weights in bf16 arithmetic (ops.h matmul_arithmetic).
#pragma once

#include <cstdint>

namespace freekv {

// y[n, m] = x[n, k] · w[m, k]ᵀ with w in bf16, x and y fp32: x is rounded to bf16 (a oneDNN reorder),
// products accumulate in fp32, on `threads` OpenMP threads. The weights are used as stored: oneDNN's
// packed layout ran 4 % faster at 512 rows (bench/results/gemm-*.json) and would need a second copy of
// every weight. Returns false, writing nothing, where this path does not run: the CPU lacks native bf16
// arithmetic (avx512_bf16; oneDNN would emulate it, slower than the fp32 BLAS path), or oneDNN has no
// kernel for it (DNNL_MAX_CPU_ISA below AVX-512).
bool matmul_bf16_onednn(const float* x, const uint16_t* w, float* y, int64_t n, int64_t k, int64_t m, int threads);

// Whether matmul_bf16_onednn runs on this machine (it answers for every shape alike).
bool matmul_bf16_onednn_runs();

}  // namespace freekv
