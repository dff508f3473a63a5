// full: every page, densely, every step — the accuracy and speed reference. Its pages all stay
// resident (a resumed session brings them all back once).
#include "worker/retrieval/policy_base.h"

namespace freekv {
namespace {

class FullPolicy : public PolicyBase {
 public:
  using PolicyBase::PolicyBase;

  absl::StatusOr<LayerPlan> plan(int64_t layer, const float*, int64_t n_q) override {
    LayerPlan plan = start_plan(layer, n_q, span(kv_->n_tokens() + n_q), /*dense=*/true);
    plan.keep_all_resident = true;
    return plan;
  }
};

}  // namespace

std::unique_ptr<RetrievalPolicy> make_full_policy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv,
                                                  ThreadPool* threads) {
  return std::make_unique<FullPolicy>(c, n_heads, kv, threads);
}

}  // namespace freekv
