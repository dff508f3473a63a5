// One interface for every retrieval policy (DESIGN §3): before a layer attends, a policy decides what
// each KV head attends and what must move for it, and returns that as a LayerPlan; worker/kv carries
// the plan out. One file per policy, named after it; make_policy() is the only place that looks at
// the policy's kind.
//
//   full       every page, densely (every page kept resident)
//   streaming  sinks + a window of the rest of the budget (StreamingLLM); the rest is never attended
//   quest      sinks + top-k pages of the current query, read where they are (every page resident:
//              the speed bound) + window
//   arkvale    sinks + top-k of the current query, missing pages recalled into slots now + window
//   freekv     sinks + the pages selected with the previous step's query, recalled in the background
//              while the model computed; a KV head whose query moved (mean cosine over its query heads
//              below τ, or τ ≥ 1) re-selects with the current query and recalls now; then the next
//              step's pages are selected with this query and recalled after attention. A layer's
//              first budget step selects synchronously.
//
// Every policy attends densely (every page, causally) in prefill chunks, in --dense-layers, and while
// the context has no page between the sinks and the window; the offloading ones (streaming with a
// kvstore, arkvale, freekv) then release what the kvstore holds, so dense attention streams it back.
//
// A windowed layer (the model's sliding_window: Mistral, Qwen2's use_sliding_window) is not the
// policy's: every policy attends exactly the model's window there (sliding_window_plan), since that
// layer's attention is already bounded; the budget and the selection apply to full-attention layers.
#pragma once

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "common/thread_pool.h"
#include "worker/kv/layer_plan.h"
#include "worker/kv/tiered_kv.h"
#include "worker/retrieval/config.h"

namespace freekv {

class RetrievalPolicy {
 public:
  virtual ~RetrievalPolicy() = default;
  // Decides what `layer` attends in a step whose n_q new tokens have been written (not committed) into
  // the sequence's KV; q: [n_q, n_heads, head_dim] their post-RoPE queries.
  virtual absl::StatusOr<LayerPlan> plan(int64_t layer, const float* q, int64_t n_q) = 0;
};

// The policy of `config` for one sequence. kv and threads (which score KV heads in parallel) must
// outlive it; n_heads: query heads.
std::unique_ptr<RetrievalPolicy> make_policy(const RetrievalConfig& config, int64_t n_heads, const TieredKv* kv,
                                             ThreadPool* threads);

// Pages a selecting policy picks per KV head once the context outgrows the budget (0 for the others).
int64_t selected_pages(const RetrievalConfig& config, int64_t page_tokens);
// Selected slots per layer and KV head a sequence under `config` needs (0 where the middle pages are
// read in place).
int64_t selected_slots(const RetrievalConfig& config, int64_t page_tokens);

// The plan of a windowed layer whose window is `window` tokens: the step's queries each see the
// `window` latest positions up to their own (LayerPlan::sliding_window), over the pages the window
// reaches, which stay resident (brought back from the kvstore once, for a resumed session). Pages
// before the window leave this worker's memory (once the kvstore holds them, or at once without one):
// the layer never reads them again.
LayerPlan sliding_window_plan(const TieredKv& kv, int64_t layer, int64_t n_q, int64_t window);

}  // namespace freekv
