// The decisions of retrieval for one sequence (DESIGN §3): per layer and step, which pages each KV
// head attends, which must be recalled before attention (synchronously) and which may arrive in the
// background; TieredKv carries them out.
//
// One interface for every policy: plan() before attention returns what to attend, after_attention()
// lets freekv launch the next step's selection. Prefill chunks (several queries) attend every page,
// densely and causally; pages that were released are brought back first. A decode step attends
// everything while the context fits the budget, and the budget once it does not:
//   streaming  sinks + a window of the rest of the budget
//   quest      sinks + top-k of the resident pages (selected with the current query) + window
//   arkvale    sinks + top-k selected with the current query, missing pages recalled now + window
//   freekv     sinks + the pages selected with the previous step's query and recalled while the
//              model computed; per KV head whose query moved (mean cosine over its query heads
//              below τ, or τ ≥ 1), re-select with the current query and recall those pages now.
//              The first budget step of a layer (after prefill) selects synchronously, like arkvale.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/ops.h"
#include "worker/kv/tiered_kv.h"
#include "worker/retrieval/config.h"

namespace freekv {

struct AttentionPlan {
  PagedKv kv;
  int64_t causal_base;  // kv index of the first query (causal within the step's new tokens)
};

class Retriever {
 public:
  // n_heads: query heads. kv and threads (which score KV heads in parallel) must outlive the retriever.
  Retriever(const RetrievalConfig& config, int64_t n_heads, TieredKv* kv, ThreadPool* threads);

  // Selected pages per KV head once the context outgrows the budget.
  static int64_t selected_pages(const RetrievalConfig& config, int64_t page_tokens);

  // q: [n_q, n_heads, head_dim] post-RoPE queries of `layer`; the step's n_q new tokens are written
  // into the KV (not yet committed).
  absl::StatusOr<AttentionPlan> plan(int64_t layer, const float* q, int64_t n_q);
  absl::Status after_attention(int64_t layer, const float* q, int64_t n_q);

  // Waits for any recall still in flight (before the sequence goes away or changes hands).
  absl::Status drain();

  const std::vector<RecallStats>& stats() const { return stats_; }  // [layer]
  RecallStats total_stats() const;

 private:
  struct LayerState {
    bool selecting = false;              // the budget is in use (a selection exists)
    PendingFill pending;                 // freekv: next step's recall in flight
    std::vector<float> prev_query;       // freekv: [n_heads, head_dim] of the previous step
    std::vector<std::vector<int32_t>> quest_pages;  // quest: [head] -> selected resident pages
  };

  bool dense_layer(int64_t layer) const;
  int64_t window_tokens() const;
  // (sink pages, first window page) of a context of `tokens`: candidates are the pages between them.
  std::pair<int64_t, int64_t> page_span(int64_t tokens) const;
  std::vector<int32_t> select(int64_t layer, int64_t head, const float* q, int64_t first, int64_t end) const;
  // select() for the KV heads with heads[h] set, in parallel; others get an empty selection.
  std::vector<std::vector<int32_t>> select_heads(int64_t layer, const std::vector<bool>& heads, const float* q,
                                                 int64_t first, int64_t end) const;
  // Slot fills that bring each chosen head's selection in (heads with an empty entry are skipped).
  std::vector<SlotFill> plan_fills(int64_t layer, const std::vector<bool>& heads,
                                   const std::vector<std::vector<int32_t>>& selected) const;
  absl::Status reset_selection(int64_t layer);
  void release_middle(int64_t layer, int64_t sink_pages, int64_t window_first);

  RetrievalConfig config_;
  int64_t n_heads_;
  TieredKv* kv_;
  ThreadPool* threads_;
  std::vector<LayerState> layers_;
  std::vector<RecallStats> stats_;
  std::vector<const void*> chunk_ptrs_;
};

}  // namespace freekv
