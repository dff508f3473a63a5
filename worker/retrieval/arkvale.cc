// arkvale: sinks + the top-k pages of the current query + window; pages between the sinks and the
// window live in the kvstore, and those selected but not already in a slot are recalled before
// attention, every step (synchronous retrieval: the baseline FreeKV's speculation improves on).
#include "worker/retrieval/policy_base.h"
#include "worker/retrieval/selection.h"

namespace freekv {
namespace {

class ArkvalePolicy : public PolicyBase {
 public:
  using PolicyBase::PolicyBase;

  absl::StatusOr<LayerPlan> plan(int64_t layer, const float* q, int64_t n_q) override {
    PageSpan s;
    LayerPlan plan = begin(layer, n_q, &s);
    release_candidates(&plan, s, /*drop=*/false);
    if (plan.dense) return plan;
    plan.middle_from_slots = true;
    FREEKV_ASSIGN_OR_RETURN(auto selected, select_all(layer, q, n_q, s));
    for (size_t h = 0; h < selected.size(); ++h) {
      plan.heads[h].fetch_now = plan_slot_updates(kv_->slot_pages(layer, int64_t(h)), selected[h]);
      plan.heads[h].middle = std::move(selected[h]);
    }
    return plan;
  }
};

}  // namespace

std::unique_ptr<RetrievalPolicy> make_arkvale_policy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv,
                                                     ThreadPool* threads) {
  return std::make_unique<ArkvalePolicy>(c, n_heads, kv, threads);
}

}  // namespace freekv
