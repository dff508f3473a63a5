// quest: sinks + the top-k pages of the current query + window, with every page resident and read in
// place: nothing is recalled, which makes it the speed bound of retrieval (and what runs out of memory
// first at long context).
#include "worker/retrieval/policy_base.h"

namespace freekv {
namespace {

class QuestPolicy : public PolicyBase {
 public:
  using PolicyBase::PolicyBase;

  absl::StatusOr<LayerPlan> plan(int64_t layer, const float* q, int64_t n_q) override {
    PageSpan s;
    LayerPlan plan = begin(layer, n_q, &s);
    plan.keep_all_resident = true;
    if (plan.dense) return plan;
    FREEKV_ASSIGN_OR_RETURN(auto selected, select_all(layer, q, n_q, s));
    for (size_t h = 0; h < selected.size(); ++h) plan.heads[h].middle = std::move(selected[h]);
    return plan;
  }
};

}  // namespace

std::unique_ptr<RetrievalPolicy> make_quest_policy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv,
                                                   ThreadPool* threads) {
  return std::make_unique<QuestPolicy>(c, n_heads, kv, threads);
}

}  // namespace freekv
