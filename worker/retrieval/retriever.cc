#include "worker/retrieval/retriever.h"

#include <algorithm>

#include "worker/retrieval/selection.h"

namespace freekv {

Retriever::Retriever(const RetrievalConfig& config, int64_t n_heads, TieredKv* kv, ThreadPool* threads)
    : config_(config), n_heads_(n_heads), kv_(kv), threads_(threads), layers_(size_t(kv->geometry().n_layers)),
      stats_(size_t(kv->geometry().n_layers)) {}

int64_t Retriever::selected_pages(const RetrievalConfig& c, int64_t pt) {
  return c.selects() ? (c.budget - c.sink - c.recent) / pt : 0;
}

// Streaming spends the whole budget after the sinks on the window; the others keep `recent`.
int64_t Retriever::window_tokens() const {
  return config_.policy == PolicyKind::kStreaming ? config_.budget - config_.sink : config_.recent;
}

std::pair<int64_t, int64_t> Retriever::page_span(int64_t tokens) const {
  const int64_t pt = kv_->geometry().page_tokens;
  const int64_t pages = (tokens + pt - 1) / pt, sink_pages = config_.sink / pt;
  return {sink_pages, std::max(sink_pages, pages - window_tokens() / pt)};
}

bool Retriever::dense_layer(int64_t layer) const {
  return std::find(config_.dense_layers.begin(), config_.dense_layers.end(), int(layer)) != config_.dense_layers.end();
}

RecallStats Retriever::total_stats() const {
  RecallStats t;
  for (const RecallStats& s : stats_) t += s;
  return t;
}

std::vector<int32_t> Retriever::select(int64_t layer, int64_t head, const float* q, int64_t first, int64_t end) const {
  const KvGeometry& g = kv_->geometry();
  const int64_t group = n_heads_ / g.n_kv_heads;
  // q is [n_heads, head_dim] of the step's (last) query; this head's group is contiguous in it.
  std::vector<float> scores = score_candidates(q + head * group * g.head_dim, group, kv_->digests(layer, head), first,
                                               end, g.head_dim, config_.gqa_score);
  return top_k_pages(scores, first, selected_pages(config_, g.page_tokens));
}

std::vector<std::vector<int32_t>> Retriever::select_heads(int64_t layer, const std::vector<bool>& heads, const float* q,
                                                          int64_t first, int64_t end) const {
  std::vector<std::vector<int32_t>> out(heads.size());
  threads_->parallel_for(int64_t(heads.size()), [&](int64_t b, int64_t e, int) {
    for (int64_t h = b; h < e; ++h)
      if (heads[size_t(h)]) out[size_t(h)] = select(layer, h, q, first, end);
  });
  return out;
}

std::vector<SlotFill> Retriever::plan_fills(int64_t layer, const std::vector<bool>& heads,
                                            const std::vector<std::vector<int32_t>>& selected) const {
  std::vector<SlotFill> fills;
  for (size_t h = 0; h < heads.size(); ++h) {
    if (!heads[h]) continue;
    for (const SlotUpdate& u : plan_slot_updates(kv_->slot_pages(layer, int64_t(h)), selected[h])) {
      fills.push_back({int32_t(h), u.slot, u.page});
    }
  }
  return fills;
}

absl::Status Retriever::reset_selection(int64_t layer) {
  LayerState& st = layers_[size_t(layer)];
  if (st.pending.active()) {
    FREEKV_RETURN_IF_ERROR(kv_->finish(&st.pending, &stats_[size_t(layer)]));
  }
  st.selecting = false;
  st.quest_pages.clear();
  kv_->clear_slots(layer);
  return absl::OkStatus();
}

// Pages between the sinks and the window leave local memory: the kvstore holds them (or, without
// one, streaming has dropped them for good).
void Retriever::release_middle(int64_t layer, int64_t sink_pages, int64_t window_first) {
  if (config_.policy == PolicyKind::kQuest) return;  // quest keeps every page resident: its speed bound
  for (int64_t p = sink_pages; p < window_first; ++p) {
    if (kv_->resident(layer, p)) kv_->release(layer, p);
  }
}

absl::StatusOr<AttentionPlan> Retriever::plan(int64_t layer, const float* q, int64_t n_q) {
  const KvGeometry& g = kv_->geometry();
  const int64_t past = kv_->n_tokens(), tokens = past + n_q;
  LayerState& st = layers_[size_t(layer)];
  RecallStats& stats = stats_[size_t(layer)];
  const auto [sink_pages, window_first] = page_span(tokens);
  // The budget is in use as soon as there are pages between the sinks and the window, so a budget
  // at least as large as the context still goes through selection and recall (and must equal full).
  const bool budget_applies = config_.policy != PolicyKind::kFull && !dense_layer(layer) && n_q == 1 &&
                              window_first > sink_pages;
  if (!budget_applies) {
    if (st.selecting) FREEKV_RETURN_IF_ERROR(reset_selection(layer));
    FREEKV_RETURN_IF_ERROR(kv_->restore_all(layer, &stats));
    return AttentionPlan{kv_->view_all(layer, tokens, &chunk_ptrs_), past};
  }
  stats.selection_steps += 1;
  const float* q_last = q + (n_q - 1) * n_heads_ * g.head_dim;

  const std::vector<bool> all_heads(size_t(g.n_kv_heads), true);
  switch (config_.policy) {
    case PolicyKind::kStreaming:
    case PolicyKind::kFull:
      break;
    case PolicyKind::kQuest:
      st.quest_pages = select_heads(layer, all_heads, q_last, sink_pages, window_first);
      break;
    case PolicyKind::kArkvale:
    case PolicyKind::kFreekv: {
      std::vector<bool> now = all_heads;
      if (config_.policy == PolicyKind::kFreekv && st.selecting) {
        // Apply what was selected with the previous query, then correct the heads whose query moved.
        FREEKV_RETURN_IF_ERROR(kv_->finish(&st.pending, &stats));
        const int64_t group = n_heads_ / g.n_kv_heads;
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          double cos = 0;
          for (int64_t j = 0; j < group; ++j) {
            const int64_t off = (h * group + j) * g.head_dim;
            cos += cosine_similarity(q_last + off, st.prev_query.data() + off, g.head_dim) / double(group);
          }
          stats.correction_checks += 1;
          now[size_t(h)] = config_.correction_threshold >= 1 || cos < config_.correction_threshold;
          stats.correction_triggers += now[size_t(h)] ? 1 : 0;
        }
      }
      auto selected = select_heads(layer, now, q_last, sink_pages, window_first);
      FREEKV_RETURN_IF_ERROR(kv_->fill_now(layer, plan_fills(layer, now, selected), &stats));
      break;
    }
  }
  st.selecting = true;
  release_middle(layer, sink_pages, window_first);
  if (config_.policy == PolicyKind::kStreaming) st.quest_pages.assign(size_t(g.n_kv_heads), {});  // no middle pages
  // Quest and streaming attend resident pages (quest_pages per head); the offloaded policies their slots.
  const bool from_slots = config_.offloaded();
  return AttentionPlan{kv_->view_budget(layer, tokens, sink_pages, window_first, from_slots ? nullptr : &st.quest_pages,
                                        &chunk_ptrs_),
                       past};
}

absl::Status Retriever::after_attention(int64_t layer, const float* q, int64_t n_q) {
  LayerState& st = layers_[size_t(layer)];
  if (config_.policy != PolicyKind::kFreekv || !st.selecting) return absl::OkStatus();
  const KvGeometry& g = kv_->geometry();
  const auto [sink_pages, window_first] = page_span(kv_->n_tokens() + n_q);
  const float* q_last = q + (n_q - 1) * n_heads_ * g.head_dim;
  // Speculative: next step attends what this step's query selects; recall it while the model runs.
  const std::vector<bool> all_heads(size_t(g.n_kv_heads), true);
  auto selected = select_heads(layer, all_heads, q_last, sink_pages, window_first);
  FREEKV_ASSIGN_OR_RETURN(st.pending, kv_->fill_async(layer, plan_fills(layer, all_heads, selected), &stats_[size_t(layer)]));
  st.prev_query.assign(q_last, q_last + n_heads_ * g.head_dim);
  return absl::OkStatus();
}

absl::Status Retriever::drain() {
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].pending.active()) FREEKV_RETURN_IF_ERROR(kv_->finish(&layers_[l].pending, &stats_[l]));
  }
  return absl::OkStatus();
}

}  // namespace freekv
