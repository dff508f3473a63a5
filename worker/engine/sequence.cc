#include "worker/engine/sequence.h"

namespace freekv {

Sequence::Sequence(KvBlockPool* pool, KvStoreBinding store, const RetrievalConfig& config, int64_t n_heads,
                   ThreadPool* threads, std::vector<int64_t> layer_windows)
    : kv_(pool, store, selected_slots(config, pool->geometry().page_tokens), config.digest, config.selects()),
      policy_(make_policy(config, n_heads, &kv_, threads)),
      stats_(size_t(pool->geometry().n_layers)),
      n_heads_(n_heads),
      layer_windows_(std::move(layer_windows)) {}

RetrievalStats Sequence::total_stats() const {
  RetrievalStats t;
  for (const RetrievalStats& s : stats_) t += s;
  return t;
}

absl::StatusOr<LayerPlan> Sequence::attend(int64_t layer, const float* q, int64_t n_q, float scale, float* out,
                                           ThreadPool& pool) {
  RetrievalStats& stats = stats_[size_t(layer)];
  const int64_t window = size_t(layer) < layer_windows_.size() ? layer_windows_[size_t(layer)] : 0;
  absl::StatusOr<LayerPlan> planned = window > 0 ? sliding_window_plan(kv_, layer, n_q, window) : policy_->plan(layer, q, n_q);
  if (!planned.ok()) return planned.status();
  LayerPlan plan = std::move(*planned);
  stats.selection_steps += plan.selection_step ? 1 : 0;
  stats.correction_checks += plan.correction_checks;
  stats.correction_triggers += plan.correction_triggers;
  FREEKV_RETURN_IF_ERROR(kv_.prepare(plan, &stats));
  if (plan.dense) {
    dense_state_.reset(n_q, n_heads_, kv_.geometry().head_dim);
    FREEKV_RETURN_IF_ERROR(kv_.attend_dense(
        plan,
        [&](const PagedKv& piece, int64_t causal_base) {
          attention_paged_accumulate(q, piece, scale, causal_base, &dense_state_, pool);
        },
        &stats));
    attention_finish(dense_state_, out);
  } else {
    FREEKV_ASSIGN_OR_RETURN(PagedKv view, kv_.budget_view(plan, &chunk_ptrs_));
    attention_paged(q, n_q, n_heads_, view, scale, /*causal_base=*/-1, out, pool);
  }
  FREEKV_RETURN_IF_ERROR(kv_.after_attention(plan, &stats));
  return plan;
}

}  // namespace freekv
