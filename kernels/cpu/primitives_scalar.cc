// The scalar primitives: the slow twins every SIMD path is compared with, and the fallback on CPUs
// without AVX2.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/primitives.h"
#include "kernels/shared_math.h"

namespace freekv {
namespace {

void matvec_scalar(const float* x, int64_t n, const void* w, DType w_dtype, int64_t k, int64_t rows,
                   float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t i = 0; i < k; ++i) acc += x[j * k + i] * load_as_f32(w, w_dtype, size_t(r * k + i));
      y[j * ldy + r] = acc;
    }
  }
}

void to_f32_scalar(const void* src, DType dtype, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(src, dtype, size_t(i));
}

void from_f32_scalar(const float* src, DType dtype, void* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_from_f32(dst, dtype, size_t(i), src[i]);
}

void bound_scores_scalar(const float* q, const float* digests, int64_t n_pages, int64_t d, float* out) {
  for (int64_t j = 0; j < n_pages; ++j) {
    const float* u = digests + j * 2 * d;
    const float* l = u + d;
    float acc = 0.f;
    for (int64_t i = 0; i < d; ++i) acc += bound_term(q[i], u[i], l[i]);
    out[j] = acc;
  }
}

void scores_group_scalar(const float* q, int64_t group, const void* keys, DType dtype, int64_t n_keys, int64_t d,
                         float scale, float* out) {
  for (int64_t g = 0; g < group; ++g) {
    for (int64_t t = 0; t < n_keys; ++t) {
      float acc = 0.f;
      for (int64_t i = 0; i < d; ++i) acc += q[g * d + i] * load_as_f32(keys, dtype, size_t(t * d + i));
      out[g * n_keys + t] = acc * scale;
    }
  }
}

void accumulate_group_scalar(const float* p, int64_t group, const void* values, DType dtype, int64_t n_values,
                             int64_t d, const float* decay, float* acc) {
  for (int64_t g = 0; g < group; ++g) {
    for (int64_t i = 0; i < d; ++i) {
      float a = acc[g * d + i] * decay[g];
      for (int64_t t = 0; t < n_values; ++t) a += p[g * n_values + t] * load_as_f32(values, dtype, size_t(t * d + i));
      acc[g * d + i] = a;
    }
  }
}

float max_of_scalar(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

float exp_shifted_scalar(float* x, int64_t n, float shift) {
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - shift));
  return sum;
}

void swiglu_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = swiglu_value(gate[i], up[i]);
}

const CpuPrimitives kScalar = {"scalar", matvec_scalar, nullptr, nullptr, to_f32_scalar, from_f32_scalar, scores_group_scalar,
                               accumulate_group_scalar, max_of_scalar, exp_shifted_scalar, nullptr, swiglu_scalar,
                               bound_scores_scalar};

}  // namespace

const CpuPrimitives& scalar_primitives() { return kScalar; }

}  // namespace freekv
