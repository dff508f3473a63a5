// Shared by the CUDA tests: device buffers, error checks that fail the test (never abort), and the
// comparison that prints max abs/rel error of a CUDA op against its CPU twin.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cuda/device.h"

namespace freekv::cuda_test {

inline int failures = 0;

// Records a failed CUDA call (with where and what) and returns false from the calling test.
#define CUDA_OK(expr)                                                                              \
  do {                                                                                             \
    cudaError_t e_ = (expr);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      ++freekv::cuda_test::failures;                                                               \
      return false;                                                                                \
    }                                                                                              \
  } while (0)

// A device copy of a host vector, freed on scope exit.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&p_, std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess) p_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (p_ != nullptr && !host.empty()) cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(p_); }
  T* get() const { return p_; }
  bool ok() const { return p_ != nullptr; }
  // Synchronous copy back (the default stream waits for the launches before it).
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    if (n_ > 0) cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// max |got − want| relative to max |want|; prints both and counts a failure above tol.
inline bool check_close(const char* what, const std::vector<float>& got, const std::vector<float>& want, double tol) {
  double max_abs = 0, max_ref = 1e-30;
  bool same_size = got.size() == want.size();
  for (size_t i = 0; same_size && i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - double(want[i]));
    max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
  }
  const bool ok = same_size && max_abs / max_ref <= tol;
  std::printf("%-48s max abs err %.3g, rel %.3g (tol %.1g) %s\n", what, max_abs, max_abs / max_ref, tol,
              ok ? "ok" : "FAILED");
  failures += ok ? 0 : 1;
  return ok;
}

// Exact equality of integer results, printing the first difference.
template <typename T>
bool check_equal(const char* what, const std::vector<T>& got, const std::vector<T>& want) {
  for (size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
    if (i >= got.size() || i >= want.size() || got[i] != want[i]) {
      std::printf("%-48s differs at %zu FAILED\n", what, i);
      ++failures;
      return false;
    }
  }
  std::printf("%-48s %zu values equal ok\n", what, got.size());
  return true;
}

// main() of every CUDA test: skip (exit 77) without a device, else run and report.
inline int run_cuda_tests(void (*tests)()) {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  tests();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace freekv::cuda_test
