// Page digests, bound scores and query similarity for retrieval. The scoring loop is the only one
// that runs over every page each step, so it goes through the SIMD primitives; the rest is per page
// or per head and stays plain.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"
#include "kernels/shared_math.h"

namespace freekv {

void page_key_stats(const void* keys, DType dtype, int64_t n_tokens, int64_t head_dim, float* stats) {
  std::vector<float> k(static_cast<size_t>(n_tokens * head_dim));
  cpu_primitives().to_f32(keys, dtype, k.data(), n_tokens * head_dim);
  float* mx = stats;
  float* mn = stats + head_dim;
  float* mad = stats + 2 * head_dim;
  for (int64_t i = 0; i < head_dim; ++i) {
    mx[i] = -std::numeric_limits<float>::infinity();
    mn[i] = std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n_tokens; ++t) {
      mx[i] = std::max(mx[i], k[size_t(t * head_dim + i)]);
      mn[i] = std::min(mn[i], k[size_t(t * head_dim + i)]);
    }
    const float c = 0.5f * (mx[i] + mn[i]);
    float r = 0.f;
    for (int64_t t = 0; t < n_tokens; ++t) r += std::fabs(k[size_t(t * head_dim + i)] - c);
    mad[i] = n_tokens > 0 ? r / float(n_tokens) : 0.f;
  }
}

void digest_from_stats(const float* stats, int64_t head_dim, DigestKind kind, float* upper, float* lower) {
  const float* mx = stats;
  const float* mn = stats + head_dim;
  const float* mad = stats + 2 * head_dim;
  for (int64_t i = 0; i < head_dim; ++i) {
    if (kind == DigestKind::kMinMax) {
      upper[i] = mx[i];
      lower[i] = mn[i];
    } else {
      upper[i] = center_mad_upper(mx[i], mn[i], mad[i]);
      lower[i] = center_mad_lower(mx[i], mn[i], mad[i]);
    }
  }
}

void bound_scores(const float* q, int64_t group, const float* digests, int64_t n_pages, int64_t head_dim,
                  float* scores) {
  const CpuPrimitives& prim = cpu_primitives();
  for (int64_t g = 0; g < group; ++g) prim.bound_scores(q + g * head_dim, digests, n_pages, head_dim, scores + g * n_pages);
}

float cosine_similarity(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  if (aa == 0 || bb == 0) return 0.f;
  return float(ab / std::sqrt(aa * bb));
}

}  // namespace freekv
