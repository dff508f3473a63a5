// Page selection for one KV head (FreeKV §3–4): score the candidate pages with the head's group of
// queries, combine the group (avg or avgsm), take the top k, and turn the new selection into slot
// updates by membership — a slot whose page is not in the new selection is a victim, whatever its
// score (comparing scores breaks on ties, a hazard of the reference).
#pragma once

#include <cstdint>
#include <vector>

#include "worker/kv/layer_plan.h"
#include "worker/retrieval/config.h"

namespace freekv {

// Combined score per candidate page. q: [group, head_dim] (post-RoPE); digests: [n_pages, 2, head_dim]
// of the head; candidates are pages [first, end). Returns [end - first] fp32 scores.
std::vector<float> score_candidates(const float* q, int64_t group, const float* digests, int64_t first,
                                    int64_t end, int64_t head_dim, GqaScore gqa);

// The k best candidates (logical pages), ties to the lower page; all of them when there are ≤ k.
std::vector<int32_t> top_k_pages(const std::vector<float>& scores, int64_t first, int64_t k);

// slot_pages[s] is the page held by selected slot s (-1 when empty). Returns, for every selected page
// not yet held, the slot it goes to: empty slots first, then slots whose page was not selected.
// |selected| must not exceed the slots.
std::vector<SlotMove> plan_slot_updates(const std::vector<int32_t>& slot_pages, const std::vector<int32_t>& selected);

}  // namespace freekv
