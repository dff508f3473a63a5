// What the policies share: the split of a context into sinks, candidates and window, when the budget
// applies, which pages an offloading policy releases, and top-k selection per KV head.
#pragma once

#include <vector>

#include "worker/retrieval/policy.h"

namespace freekv {

// Pages of a context: sinks [0, sink_pages), candidates [sink_pages, window_first), window
// [window_first, pages).
struct PageSpan {
  int64_t tokens = 0, pages = 0, sink_pages = 0, window_first = 0;
  int64_t candidates() const { return window_first - sink_pages; }
};

class PolicyBase : public RetrievalPolicy {
 public:
  PolicyBase(const RetrievalConfig& config, int64_t n_heads, const TieredKv* kv, ThreadPool* threads);

 protected:
  // The window a policy keeps: `recent` tokens (streaming overrides it).
  virtual int64_t window_tokens() const { return config_.recent; }
  PageSpan span(int64_t tokens) const;
  // The budget applies to a decode step of a selecting layer once there are candidates.
  bool budget_applies(int64_t layer, int64_t n_q, const PageSpan& s) const;
  // A plan with the step's span and nothing decided yet; `dense` or a budget plan with empty heads.
  LayerPlan start_plan(int64_t layer, int64_t n_q, const PageSpan& s, bool dense) const;
  // The step's plan as far as the span goes: a budget plan when the budget applies, else dense.
  LayerPlan begin(int64_t layer, int64_t n_q, PageSpan* s) const;
  // Adds the candidates still resident to plan->release: those the kvstore holds, and with `drop` and
  // no kvstore every one (their KV is gone for good); with a kvstore, the rest go once it holds them.
  void release_candidates(LayerPlan* plan, const PageSpan& s, bool drop) const;
  // Top-k candidates of KV head h for the group's queries q_heads[group, head_dim] (ascending pages),
  // for each head with heads[h] set, scored in parallel; others get an empty list.
  absl::StatusOr<std::vector<std::vector<int32_t>>> select(int64_t layer, const std::vector<bool>& heads,
                                                           const float* q_last, const PageSpan& s) const;
  // select() for every KV head with the last of the step's n_q queries q[n_q, n_heads, head_dim].
  absl::StatusOr<std::vector<std::vector<int32_t>>> select_all(int64_t layer, const float* q, int64_t n_q,
                                                               const PageSpan& s) const;
  const RetrievalConfig config_;
  const int64_t n_heads_, n_kv_heads_, head_dim_, page_tokens_;
  const TieredKv* kv_;
  ThreadPool* threads_;
};

}  // namespace freekv
