// streaming (StreamingLLM): the sinks and a window of the rest of the budget; nothing between them is
// attended once the context outgrows the budget. With a kvstore the pages between stay there (a later
// prefill chunk or turn attends them densely); without one they are dropped at the first budget step.
#include "worker/retrieval/policy_base.h"

namespace freekv {
namespace {

class StreamingPolicy : public PolicyBase {
 public:
  using PolicyBase::PolicyBase;

  absl::StatusOr<LayerPlan> plan(int64_t layer, const float*, int64_t n_q) override {
    PageSpan s;
    LayerPlan plan = begin(layer, n_q, &s);
    release_candidates(&plan, s, /*drop=*/!plan.dense);
    return plan;
  }

 protected:
  int64_t window_tokens() const override { return config_.budget - config_.sink; }
};

}  // namespace

std::unique_ptr<RetrievalPolicy> make_streaming_policy(const RetrievalConfig& c, int64_t n_heads, const TieredKv* kv,
                                                       ThreadPool* threads) {
  return std::make_unique<StreamingPolicy>(c, n_heads, kv, threads);
}

}  // namespace freekv
