// y = x · wᵀ, for one w or for several sharing x (their rows laid end to end and split across threads
// together). Decode-sized batches (n ≤ 8) are bound by reading w once: SIMD dot products over the
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
// Most bytes of w per oneDNN call. oneDNN streams a call's w once per block of x's rows, so it should
// stay in cache: one thread per 32 MiB matrix (gate and up of a 512-token chunk) ran at half the rate of
// 8 MiB calls (Zen 5 VM, 2 threads); 2, 4 and 8 MiB were within 10% of each other, 8 the fastest.
constexpr int64_t kOnednnBlockBytes = int64_t(8) << 20;

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

int64_t total_rows(std::span<const MatmulOutput> outputs) {
  int64_t m = 0;
  for (const MatmulOutput& o : outputs) m += o.m;
  return m;
}

// piece(output, r0, r1) for the rows [r0, r1) of each output that fall in [b, e) of the outputs' rows
// laid end to end.
template <class Piece>
void for_each_piece(std::span<const MatmulOutput> outputs, int64_t b, int64_t e, Piece&& piece) {
  int64_t first = 0;  // the output's first row in the laid-out rows
  for (const MatmulOutput& o : outputs) {
    const int64_t r0 = std::max(b, first) - first, r1 = std::min(e, first + o.m) - first;
    if (r0 < r1) piece(o, r0, r1);
    first += o.m;
  }
}

// The bf16-arithmetic products (every output's weights bf16), each thread taking a contiguous range of
// the laid-out rows; false where oneDNN declined a shape (it declines every shape alike, so no thread
// wrote anything).
bool matmul_bf16_arithmetic(const float* x, int64_t n, int64_t k, std::span<const MatmulOutput> outputs,
                            ThreadPool& pool) {
  const CpuPrimitives& prim = cpu_primitives();
  thread_local std::vector<uint16_t> x_bf16;  // [n, k], rounded once for every thread's rows
  x_bf16.resize(size_t(n * k));
  prim.from_f32(x, DType::kBF16, x_bf16.data(), n * k);
  const uint16_t* xb = x_bf16.data();
  const auto rows_of = [k](const MatmulOutput& o, int64_t r0) { return static_cast<const uint16_t*>(o.w) + r0 * k; };
  if (n <= kMatvecMaxRows) {
    pool.parallel_for(total_rows(outputs), [&](int64_t b, int64_t e, int) {
      for_each_piece(outputs, b, e, [&](const MatmulOutput& o, int64_t r0, int64_t r1) {
        prim.matvec_bf16_dot(xb, n, rows_of(o, r0), k, r1 - r0, o.y + r0, o.m);
      });
    }, 16);
    return true;
  }
  std::atomic<bool> declined{false};
  const int64_t block = std::max<int64_t>(kGemmBlockRows, kOnednnBlockBytes / (k * int64_t(sizeof(uint16_t))));
  pool.parallel_for(total_rows(outputs), [&](int64_t b, int64_t e, int) {
    for_each_piece(outputs, b, e, [&](const MatmulOutput& o, int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += block) {
        if (!matmul_bf16_onednn(xb, rows_of(o, b0), o.y + b0, n, k, std::min(block, r1 - b0), o.m)) declined = true;
      }
    });
  }, kGemmBlockRows);
  return !declined;
}

void matmul_fp32_arithmetic(const float* x, int64_t n, int64_t k, std::span<const MatmulOutput> outputs,
                            ThreadPool& pool) {
  const CpuPrimitives& prim = cpu_primitives();
  const auto rows_of = [k](const MatmulOutput& o, int64_t r0) {
    return static_cast<const uint8_t*>(o.w) + size_t(r0 * k) * dtype_size(o.w_dtype);
  };
  if (n <= kMatvecMaxRows) {
    pool.parallel_for(total_rows(outputs), [&](int64_t b, int64_t e, int) {
      for_each_piece(outputs, b, e, [&](const MatmulOutput& o, int64_t r0, int64_t r1) {
        prim.matvec(x, n, rows_of(o, r0), o.w_dtype, k, r1 - r0, o.y + r0, o.m);
      });
    }, 16);
    return;
  }
  use_single_threaded_blas();
  pool.parallel_for(total_rows(outputs), [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> wf;
    wf.resize(size_t(kGemmBlockRows * k));
    for_each_piece(outputs, b, e, [&](const MatmulOutput& o, int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += kGemmBlockRows) {
        const int64_t rows = std::min(kGemmBlockRows, r1 - b0);
        prim.to_f32(rows_of(o, b0), o.w_dtype, wf.data(), rows * k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(k), 1.f, x, int(k),
                    wf.data(), int(k), 0.f, o.y + b0, int(o.m));
      }
    });
  }, kGemmBlockRows);
}

}  // namespace

void matmul_shared_input(const float* x, int64_t n, int64_t k, std::span<const MatmulOutput> outputs,
                         ThreadPool& pool) {
  const bool all_bf16 = std::all_of(outputs.begin(), outputs.end(),
                                    [](const MatmulOutput& o) { return o.w_dtype == DType::kBF16; });
  const bool bf16_done = all_bf16 && matmul_arithmetic() == MatmulArithmetic::kBF16 &&
                         matmul_bf16_arithmetic(x, n, k, outputs, pool);
  if (!bf16_done) matmul_fp32_arithmetic(x, n, k, outputs, pool);
  for (const MatmulOutput& o : outputs)
    if (o.bias != nullptr) add_bias(o.bias, o.y, n, o.m);
}

void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t n,
            int64_t k, int64_t m, ThreadPool& pool) {
  const MatmulOutput only[] = {{w, w_dtype, bias, y, m}};
  matmul_shared_input(x, n, k, only, pool);
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
