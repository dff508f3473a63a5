// The GPU forward pass's KV: one device pool per layer in the paged layout of kernels/shared_math.h
// (chunks of [2 (K, V)][page_tokens][head_dim]), with a fixed region per sequence slot, and the host-side
// plan of a step: where each new token's K/V goes and which chunks each (sequence, KV head) row
// attends. Plain C++ (no CUDA): the CPU tests check it; the CUDA pass uploads it once per step.
//
// A slot owns max_pages chunks per KV head in every layer, so chunk ids are arithmetic and the same in
// every layer (each layer's pool has its own base address): the step's index arrays are built once and
// serve all layers.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "worker/kv/kv_cache.h"

namespace freekv {

struct DeviceKvGeometry {
  KvGeometry page;        // a page's shape: layers, KV heads, head_dim, tokens, dtype (as the CPU engine's)
  int64_t slots = 0;      // sequences the pool holds at once
  int64_t max_pages = 0;  // chunks per (slot, KV head): a slot holds up to max_pages × page_tokens tokens

  int64_t chunks_per_layer() const { return slots * page.n_kv_heads * max_pages; }
  int64_t layer_bytes() const { return chunks_per_layer() * int64_t(page.chunk_bytes()); }
  int64_t max_tokens() const { return max_pages * page.page_tokens; }
  // Chunk id, within a layer's pool, of page `p` of KV head `head` of slot `slot`.
  int32_t chunk_id(int64_t slot, int64_t head, int64_t p) const {
    return int32_t((slot * page.n_kv_heads + head) * max_pages + p);
  }
};

// One input of a step: n_new tokens appended to slot `slot`, which holds n_past tokens before the step.
struct DeviceStepInput {
  int64_t slot = 0;
  int64_t n_past = 0;
  int64_t n_new = 0;
};

// The host arrays of one step (rows = Σ n_new, the step's tokens in input order). Every new token
// attends its sequence's tokens up to and including itself (causal within the step).
struct DeviceStepPlan {
  std::vector<int32_t> positions;    // [rows] position of each token in its sequence
  std::vector<int32_t> query_seq;    // [rows] input index of each token: its attention row group
  std::vector<int32_t> visible;      // [rows] tokens it attends (position + 1)
  std::vector<int32_t> indptr;       // [n_inputs × n_kv_heads + 1] into indices, row = input · n_kv_heads + h
  std::vector<int32_t> indices;      // chunk ids each row attends, in page order
  std::vector<int32_t> last_len;     // [n_inputs × n_kv_heads] tokens in each row's last chunk
  std::vector<int32_t> write_chunk;  // [rows, n_kv_heads] chunk each new token's K/V goes to
  std::vector<int32_t> write_token;  // [rows] token slot within that chunk
  int64_t max_chunks = 0;            // the longest row
};

// INVALID_ARGUMENT for a slot outside the pool, a slot twice in one step, an input without tokens,
// and RESOURCE_EXHAUSTED for a sequence that would outgrow its slot (saying how many tokens fit).
absl::Status plan_device_step(const DeviceKvGeometry& geometry, const std::vector<DeviceStepInput>& inputs,
                              DeviceStepPlan* plan);

}  // namespace freekv
