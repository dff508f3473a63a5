// CUDA twins against the CPU ops, printing max abs/rel error. Exits 77 when no GPU is visible.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/ops.h"

namespace {

int failures = 0;

#define CUDA_OK(expr)                                                                              \
  do {                                                                                             \
    cudaError_t e_ = (expr);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      return false;                                                                                \
    }                                                                                              \
  } while (0)

bool check(const char* what, const std::vector<float>& got, const std::vector<float>& want, double tol) {
  double max_abs = 0, max_ref = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    max_abs = std::max(max_abs, double(std::fabs(got[i] - want[i])));
    max_ref = std::max(max_ref, double(std::fabs(want[i])));
  }
  const bool ok = max_abs / max_ref <= tol;
  std::printf("%s: max abs err %.3g, rel %.3g %s\n", what, max_abs, max_abs / max_ref, ok ? "ok" : "FAILED");
  failures += ok ? 0 : 1;
  return ok;
}

bool test_rmsnorm() {
  const int64_t n = 7, d = 2048;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> x(size_t(n * d)), want(size_t(n * d)), got(size_t(n * d));
  std::vector<uint16_t> w(static_cast<size_t>(d));
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = freekv::f32_to_bf16(1.f + 0.1f * nd(rng));
  freekv::rmsnorm(x.data(), w.data(), freekv::DType::kBF16, 1e-5f, want.data(), n, d);
  float *dx, *dy;
  uint16_t* dw;
  CUDA_OK(cudaMalloc(&dx, x.size() * 4));
  CUDA_OK(cudaMalloc(&dy, x.size() * 4));
  CUDA_OK(cudaMalloc(&dw, w.size() * 2));
  CUDA_OK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice));
  CUDA_OK(freekv::rmsnorm_cuda(dx, dw, 1e-5f, dy, n, d, nullptr));
  CUDA_OK(cudaMemcpy(got.data(), dy, got.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dw);
  return check("rmsnorm cuda vs cpu", got, want, 1e-5);
}

}  // namespace

int main() {
  if (freekv::cuda_device_count() == 0) {
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  if (!test_rmsnorm()) ++failures;
  return failures == 0 ? 0 : 1;
}
