// freekv: speculative retrieval with fine-grained correction (FreeKV §3–4).
//
// Per layer, step t attends what was selected with step t−1's query and recalled into the slots in
// the background while the model computed (the recall lands at this layer's prepare). Per KV head the
// query's movement is checked first: the mean cosine of q_t and q_{t−1} over the head's query heads
// below τ (or τ ≥ 1) re-selects that head with q_t and recalls its missing pages now; the other heads
// keep their speculative pages. After attention, q_t selects step t+1's pages for every head (over the
// candidates of a context one token longer) and their recall starts in the background: those slots are
// not read again before step t+1's prepare. A layer's first budget step (after prefill, or any dense
// step) selects every head with q_t synchronously, like arkvale.
#include <vector>

#include "worker/retrieval/policy_base.h"
#include "worker/retrieval/selection.h"

namespace freekv {
namespace {

class FreekvPolicy : public PolicyBase {
 public:
  FreekvPolicy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv, ThreadPool* threads)
      : PolicyBase(c, n_heads, kv, threads), layers_(size_t(kv->geometry().n_layers)) {}

  absl::StatusOr<LayerPlan> plan(int64_t layer, const float* q, int64_t n_q) override {
    LayerState& st = layers_[size_t(layer)];
    PageSpan s;
    LayerPlan plan = begin(layer, n_q, &s);
    release_candidates(&plan, s, /*drop=*/false);
    if (plan.dense) {
      st.speculating = false;  // the next budget step starts over, synchronously
      return plan;
    }
    plan.middle_from_slots = true;
    const float* q_t = q + (n_q - 1) * n_heads_ * head_dim_;
    const int64_t group = n_heads_ / n_kv_heads_;

    // Which heads select with q_t now: all of them on the first step, else those whose query moved.
    std::vector<bool> now(size_t(n_kv_heads_), true);
    if (st.speculating) {
      for (int64_t h = 0; h < n_kv_heads_; ++h) {
        double cos = 0;
        for (int64_t j = 0; j < group; ++j) {
          const int64_t off = (h * group + j) * head_dim_;
          cos += cosine_similarity(q_t + off, st.prev_query.data() + off, head_dim_) / double(group);
        }
        now[size_t(h)] = config_.correction_threshold >= 1 || cos < config_.correction_threshold;
        plan.correction_checks += 1;
        plan.correction_triggers += now[size_t(h)] ? 1 : 0;
      }
    }
    FREEKV_ASSIGN_OR_RETURN(auto selected, select(layer, now, q_t, s));
    std::vector<std::vector<int32_t>> held(static_cast<size_t>(n_kv_heads_));
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
      HeadPlan& hp = plan.heads[size_t(h)];
      held[size_t(h)] = kv_->slot_pages(layer, h);  // what the slots hold once the background recall lands
      if (now[size_t(h)]) {
        hp.fetch_now = plan_slot_updates(held[size_t(h)], selected[size_t(h)]);
        for (const SlotMove& m : hp.fetch_now) held[size_t(h)][size_t(m.slot)] = m.page;
        hp.middle = std::move(selected[size_t(h)]);
      } else {
        hp.middle = st.next[size_t(h)];
      }
    }

    // Speculation: step t+1 (one token longer) attends what q_t selects; recalled after attention.
    const PageSpan next_span = span(s.tokens + 1);
    FREEKV_ASSIGN_OR_RETURN(st.next, select_all(layer, q, n_q, next_span));
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
      plan.heads[size_t(h)].fetch_next = plan_slot_updates(held[size_t(h)], st.next[size_t(h)]);
    }
    st.prev_query.assign(q_t, q_t + n_heads_ * head_dim_);
    st.speculating = true;
    return plan;
  }

 private:
  struct LayerState {
    bool speculating = false;                // next holds this layer's speculative selection
    std::vector<float> prev_query;           // [n_heads, head_dim] of the previous step
    std::vector<std::vector<int32_t>> next;  // [kv head] pages selected for the next step
  };
  std::vector<LayerState> layers_;
};

}  // namespace

std::unique_ptr<RetrievalPolicy> make_freekv_policy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv,
                                                    ThreadPool* threads) {
  return std::make_unique<FreekvPolicy>(c, n_heads, kv, threads);
}

}  // namespace freekv
