// A windowed layer's plan (policy.h, sliding_window_plan): the pages the model's window reaches,
// attended densely and masked per query, whatever the policy.
#include <algorithm>

#include "worker/retrieval/policy.h"

namespace freekv {

LayerPlan sliding_window_plan(const TieredKv& kv, int64_t layer, int64_t n_q, int64_t window) {
  const int64_t pt = kv.geometry().page_tokens, past = kv.n_tokens();
  LayerPlan plan;
  plan.layer = layer;
  plan.tokens = past + n_q;
  plan.new_tokens = n_q;
  plan.sliding_window = window;
  plan.dense = true;
  // The step's first query (at position `past`) sees from past − window + 1 on; later ones less.
  const int64_t first_page = std::max<int64_t>(0, past - window + 1) / pt;
  plan.sink_pages = 0;
  plan.window_first = first_page;  // [first_page, pages) stays resident
  // What lies before is never read by this layer again (positions only grow): it leaves this worker's
  // memory once the kvstore holds it, or at once without a kvstore.
  for (int64_t p = 0; p < first_page; ++p) {
    if (kv.resident(layer, p) && (kv.offloaded(p) || !kv.offloads())) plan.release.push_back(int32_t(p));
  }
  plan.release_when_offloaded = kv.offloads();
  return plan;
}

}  // namespace freekv
