// RMSNorm and rotary embeddings: cheap next to the matrix products, so plain loops (a prefill chunk
// spreads their rows over the pool: worker/engine/forward.cc).
#include <cmath>
#include <vector>

#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"
#include "kernels/shared_math.h"

namespace freekv {

void rmsnorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t n, int64_t d) {
  thread_local std::vector<float> wf;  // w widened once per call, not once per row
  wf.resize(size_t(d));
  cpu_primitives().to_f32(w, w_dtype, wf.data(), d);
  for (int64_t j = 0; j < n; ++j) {
    const float* xr = x + j * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / double(d) + eps));
    float* yr = y + j * d;
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv * wf[size_t(i)];
  }
}

void rope_apply(float* x, const int32_t* positions, const float* inv_freq, int64_t n, int64_t n_heads,
                int64_t head_dim) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = rope_angle(positions[j], inv_freq[i]);
      cos_t[size_t(i)] = float(std::cos(angle));
      sin_t[size_t(i)] = float(std::sin(angle));
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (j * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        rope_rotate(v[i], v[i + half], cos_t[size_t(i)], sin_t[size_t(i)]);
      }
    }
  }
}

}  // namespace freekv
