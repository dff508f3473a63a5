// y = x · wᵀ. Decode-sized batches (n ≤ 8) are bound by reading w once: SIMD dot products over the
// stored dtype, rows of w split across threads. Prefill-sized batches are bound by arithmetic: in bf16
// arithmetic (ops.h) each thread runs oneDNN's bf16 matmul on its range of w's rows (matmul_onednn.h;
// about 3.5× the fp32 path at a 512-token chunk on Zen 5); in fp32 each thread widens a block of w rows
// to fp32 (the block fits in L2) and hands it to BLAS sgemm, so the widening is paid once per block and
// amortised over all n rows of x. Splitting x's rows instead would have both threads read all of w:
// 1.7× slower.
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/matmul_onednn.h"
#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"

namespace freekv {
namespace {

constexpr int64_t kMatvecMaxRows = 8;   // largest n the streaming SIMD path takes
constexpr int64_t kGemmBlockRows = 64;  // w rows widened per BLAS call: 64 × k × 4 bytes

void add_bias(const float* bias, float* y, int64_t n, int64_t m) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = 0; r < m; ++r) y[j * m + r] += bias[r];
}

}  // namespace

MatmulArithmetic matmul_arithmetic() {
  static const MatmulArithmetic chosen = [] {
    const char* asked = std::getenv("FREEKV_MATMUL");
    if (asked != nullptr && std::strcmp(asked, "fp32") == 0) return MatmulArithmetic::kF32;
    const bool native = cpu_primitives().matvec_bf16_dot != nullptr && matmul_bf16_onednn_runs();
    return native ? MatmulArithmetic::kBF16 : MatmulArithmetic::kF32;
  }();
  return chosen;
}

const char* matmul_arithmetic_name(MatmulArithmetic arithmetic) {
  return arithmetic == MatmulArithmetic::kBF16 ? "bf16" : "fp32";
}

namespace {

// The bf16-arithmetic products, each thread taking a contiguous range of w's rows; false where oneDNN
// declined the shape (it declines every shape alike, so no thread wrote anything).
bool matmul_bf16_arithmetic(const float* x, const uint16_t* w, float* y, int64_t n, int64_t k, int64_t m,
                            ThreadPool& pool) {
  const CpuPrimitives& prim = cpu_primitives();
  thread_local std::vector<uint16_t> x_bf16;  // [n, k], rounded once for every thread's rows
  x_bf16.resize(size_t(n * k));
  prim.from_f32(x, DType::kBF16, x_bf16.data(), n * k);
  const uint16_t* xb = x_bf16.data();
  if (n <= kMatvecMaxRows) {
    pool.parallel_for(m, [&](int64_t b, int64_t e, int) {
      prim.matvec_bf16_dot(xb, n, w + b * k, k, e - b, y + b, m);
    }, 16);
    return true;
  }
  std::atomic<bool> declined{false};
  pool.parallel_for(m, [&](int64_t b, int64_t e, int) {
    if (!matmul_bf16_onednn(xb, w + b * k, y + b, n, k, e - b, m)) declined = true;
  }, kGemmBlockRows);
  return !declined;
}

void matmul_fp32_arithmetic(const float* x, const void* w, DType w_dtype, float* y, int64_t n, int64_t k,
                            int64_t m, ThreadPool& pool) {
  const CpuPrimitives& prim = cpu_primitives();
  const size_t row_bytes = size_t(k) * dtype_size(w_dtype);
  const auto* wb = static_cast<const uint8_t*>(w);
  if (n <= kMatvecMaxRows) {
    pool.parallel_for(m, [&](int64_t b, int64_t e, int) {
      prim.matvec(x, n, wb + size_t(b) * row_bytes, w_dtype, k, e - b, y + b, m);
    }, 16);
    return;
  }
  use_single_threaded_blas();
  const int64_t n_blocks = (m + kGemmBlockRows - 1) / kGemmBlockRows;
  pool.parallel_for(n_blocks, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> wf;
    wf.resize(size_t(kGemmBlockRows * k));
    for (int64_t blk = b; blk < e; ++blk) {
      int64_t r0 = blk * kGemmBlockRows, rows = std::min(kGemmBlockRows, m - r0);
      prim.to_f32(wb + size_t(r0) * row_bytes, w_dtype, wf.data(), rows * k);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(k), 1.f, x, int(k),
                  wf.data(), int(k), 0.f, y + r0, int(m));
    }
  });
}

}  // namespace

void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t n,
            int64_t k, int64_t m, ThreadPool& pool) {
  const bool bf16_done = w_dtype == DType::kBF16 && matmul_arithmetic() == MatmulArithmetic::kBF16 &&
                         matmul_bf16_arithmetic(x, static_cast<const uint16_t*>(w), y, n, k, m, pool);
  if (!bf16_done) matmul_fp32_arithmetic(x, w, w_dtype, y, n, k, m, pool);
  if (bias != nullptr) add_bias(bias, y, n, m);
}

void matmul_reference(const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                      int64_t n, int64_t k, int64_t m) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t r = 0; r < m; ++r) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += double(x[j * k + i]) * load_as_f32(w, w_dtype, size_t(r * k + i));
      y[j * m + r] = float(acc) + (bias != nullptr ? bias[r] : 0.f);
    }
  }
}

}  // namespace freekv
