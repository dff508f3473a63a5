// Per-element arithmetic that the CPU ops and their CUDA twins share: one definition, compiled for the
// host by the CPU kernels (and so run by the CPU tests in CI) and for the device by nvcc. Only what is
// the same expression on both sides lives here: no loops, no memory layout beyond index maths.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FREEKV_HD __host__ __device__ __forceinline__
#else
#define FREEKV_HD inline
#endif

namespace freekv {

// Phase of rotary pair i at a position, in radians. In double: positions reach 10^5 and an fp32
// product would lose the low bits of the phase.
FREEKV_HD double rope_angle(int32_t position, float inv_freq) { return double(position) * double(inv_freq); }

// Rotates the pair (a, b) = (x[i], x[i + head_dim/2]) by the angle whose cosine and sine are c and s
// (the rotate-half convention of Hugging Face's Llama).
FREEKV_HD void rope_rotate(float& a, float& b, float c, float s) {
  const float a0 = a;
  a = a0 * c - b * s;
  b = b * c + a0 * s;
}

// One dimension's share of the upper bound of q·k over a page whose keys lie in [lower, upper]:
// the larger end of the interval times q.
FREEKV_HD float bound_term(float q, float upper, float lower) { return fmaxf(q * upper, q * lower); }

// The ArkVale digest of one dimension from its key statistics (max, min, mean absolute deviation from
// the box centre): centre ± mad.
FREEKV_HD float center_mad_upper(float mx, float mn, float mad) { return 0.5f * (mx + mn) + mad; }
FREEKV_HD float center_mad_lower(float mx, float mn, float mad) { return 0.5f * (mx + mn) - mad; }

// silu(gate) * up, the SwiGLU of Llama's MLP.
FREEKV_HD float swiglu_value(float gate, float up) { return gate / (1.f + expf(-gate)) * up; }

// ---- the paged layout of the CUDA backend (flashinfer's: indptr, indices, last-page length) ----
// A pool holds chunks [n_chunks][2 (K, V)][page_tokens][head_dim]; a row (one sequence's KV head)
// attends chunks indices[indptr[row] .. indptr[row + 1]), all full but the last, which holds
// last_len[row] tokens.

// Tokens a row attends.
FREEKV_HD int64_t paged_row_tokens(int64_t n_chunks, int64_t last_len, int64_t page_tokens) {
  return n_chunks == 0 ? 0 : (n_chunks - 1) * page_tokens + last_len;
}

// Element offset of (chunk, K or V, token, dim) in the pool.
FREEKV_HD int64_t paged_elem_offset(int64_t chunk, int kv_half, int64_t token, int64_t dim, int64_t page_tokens,
                                    int64_t head_dim) {
  return ((chunk * 2 + kv_half) * page_tokens + token) * head_dim + dim;
}

}  // namespace freekv
