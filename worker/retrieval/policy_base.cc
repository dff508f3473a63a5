#include "worker/retrieval/policy_base.h"

#include <algorithm>

#include "worker/retrieval/selection.h"

namespace freekv {

PolicyBase::PolicyBase(const RetrievalConfig& config, int64_t n_heads, const TieredKv* kv, ThreadPool* threads)
    : config_(config), n_heads_(n_heads), n_kv_heads_(kv->geometry().n_kv_heads), head_dim_(kv->geometry().head_dim),
      page_tokens_(kv->geometry().page_tokens), kv_(kv), threads_(threads) {}

PageSpan PolicyBase::span(int64_t tokens) const {
  PageSpan s;
  s.tokens = tokens;
  s.pages = (tokens + page_tokens_ - 1) / page_tokens_;
  s.sink_pages = std::min(s.pages, config_.sink / page_tokens_);
  s.window_first = std::max(s.sink_pages, s.pages - window_tokens() / page_tokens_);
  return s;
}

bool PolicyBase::budget_applies(int64_t layer, int64_t n_q, const PageSpan& s) const {
  const auto& dense = config_.dense_layers;
  return n_q == 1 && s.candidates() > 0 && std::find(dense.begin(), dense.end(), int(layer)) == dense.end();
}

LayerPlan PolicyBase::start_plan(int64_t layer, int64_t n_q, const PageSpan& s, bool dense) const {
  LayerPlan plan;
  plan.layer = layer;
  plan.tokens = s.tokens;
  plan.new_tokens = n_q;
  plan.sink_pages = s.sink_pages;
  plan.window_first = s.window_first;
  plan.dense = dense;
  plan.selection_step = !dense;
  if (!dense) plan.heads.resize(size_t(n_kv_heads_));
  return plan;
}

LayerPlan PolicyBase::begin(int64_t layer, int64_t n_q, PageSpan* s) const {
  *s = span(kv_->n_tokens() + n_q);
  return start_plan(layer, n_q, *s, !budget_applies(layer, n_q, *s));
}

absl::StatusOr<std::vector<std::vector<int32_t>>> PolicyBase::select_all(int64_t layer, const float* q, int64_t n_q,
                                                                         const PageSpan& s) const {
  return select(layer, std::vector<bool>(size_t(n_kv_heads_), true), q + (n_q - 1) * n_heads_ * head_dim_, s);
}

void PolicyBase::release_candidates(LayerPlan* plan, const PageSpan& s, bool drop) const {
  plan->release_when_offloaded = kv_->offloads();
  for (int64_t p = s.sink_pages; p < s.window_first; ++p) {
    if (kv_->resident(plan->layer, p) && (kv_->offloaded(p) || (drop && !kv_->offloads()))) {
      plan->release.push_back(int32_t(p));
    }
  }
}

absl::StatusOr<std::vector<std::vector<int32_t>>> PolicyBase::select(int64_t layer, const std::vector<bool>& heads,
                                                                     const float* q_last, const PageSpan& s) const {
  if (s.window_first > kv_->digested_pages()) {
    return absl::InternalError(absl::StrCat("layer ", layer, ": candidates up to page ", s.window_first,
                                            " but only ", kv_->digested_pages(), " pages have digests"));
  }
  const int64_t group = n_heads_ / n_kv_heads_, k = selected_pages(config_, page_tokens_);
  std::vector<std::vector<int32_t>> out(heads.size());
  threads_->parallel_for(int64_t(heads.size()), [&](int64_t b, int64_t e, int) {
    for (int64_t h = b; h < e; ++h) {
      if (!heads[size_t(h)]) continue;
      // q_last is [n_heads, head_dim]; this KV head's group of query heads is contiguous in it.
      const std::vector<float> scores = score_candidates(q_last + h * group * head_dim_, group, kv_->digests(layer, h),
                                                         s.sink_pages, s.window_first, head_dim_, config_.gqa_score);
      out[size_t(h)] = top_k_pages(scores, s.sink_pages, k);
    }
  });
  return out;
}

}  // namespace freekv
