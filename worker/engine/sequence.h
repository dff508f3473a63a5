// One sequence being generated: its KV across tiers, the retrieval policy that decides what it attends,
// and what retrieval did (per layer). A sequence may be bound to a kvstore session (its pages are
// offloaded there and survive it).
#pragma once

#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "worker/kv/tiered_kv.h"
#include "worker/retrieval/policy.h"

namespace freekv {

class Sequence {
 public:
  // threads score pages for selection; pool, store's recall queue and threads must outlive the sequence.
  // layer_windows: [n_layers] the model's sliding window of each layer in tokens (0: the layer attends
  // the whole context; empty: no layer has a window); a windowed layer attends its window whatever the
  // policy (sliding_window_plan).
  Sequence(KvBlockPool* pool, KvStoreBinding store, const RetrievalConfig& config, int64_t n_heads, ThreadPool* threads,
           std::vector<int64_t> layer_windows = {});

  TieredKv& kv() { return kv_; }
  int64_t n_tokens() const { return kv_.n_tokens(); }

  // One layer's attention for the step's n_q new tokens, whose K/V are written (not committed):
  // q[n_q, n_heads, head_dim] post-RoPE queries, out[n_q, n_heads, head_dim]. The policy decides, the KV
  // carries the plan out, attention runs over what it chose, and the next step's background recall
  // starts; a windowed layer follows sliding_window_plan instead. Returns the plan it followed.
  absl::StatusOr<LayerPlan> attend(int64_t layer, const float* q, int64_t n_q, float scale, float* out,
                                   ThreadPool& pool);

  // Waits for every recall still in flight (before the sequence goes away or changes hands), past
  // failures; returns the first.
  absl::Status drain() { return kv_.drain(&stats_); }

  const std::vector<RetrievalStats>& stats() const { return stats_; }  // [layer]
  RetrievalStats total_stats() const;

 private:
  TieredKv kv_;
  std::unique_ptr<RetrievalPolicy> policy_;
  std::vector<RetrievalStats> stats_;
  int64_t n_heads_;
  std::vector<int64_t> layer_windows_;
  std::vector<const void*> chunk_ptrs_;
  AttentionState dense_state_;
};

}  // namespace freekv
