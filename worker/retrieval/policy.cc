// The factory: the one place that turns a policy kind into its implementation.
#include "worker/retrieval/policy.h"

namespace freekv {

std::unique_ptr<RetrievalPolicy> make_full_policy(const RetrievalConfig&, int64_t, const TieredKv*, ThreadPool*);
std::unique_ptr<RetrievalPolicy> make_streaming_policy(const RetrievalConfig&, int64_t, const TieredKv*, ThreadPool*);
std::unique_ptr<RetrievalPolicy> make_quest_policy(const RetrievalConfig&, int64_t, const TieredKv*, ThreadPool*);
std::unique_ptr<RetrievalPolicy> make_arkvale_policy(const RetrievalConfig&, int64_t, const TieredKv*, ThreadPool*);
std::unique_ptr<RetrievalPolicy> make_freekv_policy(const RetrievalConfig&, int64_t, const TieredKv*, ThreadPool*);

std::unique_ptr<RetrievalPolicy> make_policy(const RetrievalConfig& config, int64_t n_heads, const TieredKv* kv,
                                             ThreadPool* threads) {
  switch (config.policy) {
    case PolicyKind::kFull: return make_full_policy(config, n_heads, kv, threads);
    case PolicyKind::kStreaming: return make_streaming_policy(config, n_heads, kv, threads);
    case PolicyKind::kQuest: return make_quest_policy(config, n_heads, kv, threads);
    case PolicyKind::kArkvale: return make_arkvale_policy(config, n_heads, kv, threads);
    case PolicyKind::kFreekv: return make_freekv_policy(config, n_heads, kv, threads);
  }
  return make_full_policy(config, n_heads, kv, threads);
}

int64_t selected_pages(const RetrievalConfig& c, int64_t page_tokens) {
  return c.selects() ? (c.budget - c.sink - c.recent) / page_tokens : 0;
}

int64_t selected_slots(const RetrievalConfig& c, int64_t page_tokens) {
  return c.offloaded() ? selected_pages(c, page_tokens) : 0;
}

}  // namespace freekv
