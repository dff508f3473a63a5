// A retrieval decision as data: what one sequence attends at one layer in one step, and what has to
// move for it. Policies (worker/retrieval) produce it; TieredKv carries it out, the only place where
// residency changes (DESIGN §2–3). A device backend executes the same plan.
//
// Pages are logical page indices of the layer. A selected slot holds one KV head's chunk of one page;
// each head may hold different pages in the same slot. A slot is freed by the move that refills it (its
// old page is the victim, chosen by membership); a slot no move touches keeps its page, attended or not,
// so a page selected again later needs no recall.
#pragma once

#include <cstdint>
#include <vector>

namespace freekv {

struct SlotMove {
  int32_t slot;
  int32_t page;  // the page whose chunk (of the head the move belongs to) goes into the slot
};

struct HeadPlan {
  std::vector<int32_t> middle;          // pages attended between the sinks and the window (any number)
  std::vector<SlotMove> fetch_now;      // into selected slots before attention (waited for)
  std::vector<SlotMove> fetch_next;     // into selected slots after attention, in the background: the
                                        // next step's selection (those slots are not read before then)
};

struct LayerPlan {
  int64_t layer = 0;
  int64_t tokens = 0;      // tokens attention sees: committed ones plus the step's new ones
  int64_t new_tokens = 0;  // the step's new tokens (its queries), causal among themselves
  // Sinks [0, sink_pages) and window [window_first, pages) always stay resident in this worker, and
  // every page does with keep_all_resident (full, quest).
  int64_t sink_pages = 0;
  int64_t window_first = 0;
  bool keep_all_resident = false;
  // Dense: attend every page [0, pages) causally (prefill chunks, contexts the budget covers, full
  // attention); pages not resident are streamed from the kvstore in groups. Otherwise the budget:
  // sinks, heads[h].middle, window.
  bool dense = true;
  // > 0 (dense plans only): a windowed layer; each new token at position p sees positions
  // (p − sliding_window, p] and pages before window_first are not attended.
  int64_t sliding_window = 0;
  bool middle_from_slots = false;   // middle pages are read from selected slots (else resident pages)
  std::vector<HeadPlan> heads;      // [n_kv_heads]; empty for dense plans that move nothing
  std::vector<int32_t> release;     // resident pages to free before attention (the kvstore keeps them)
  // And candidates [sink_pages, window_first) of this span still resident go as soon as the kvstore
  // holds them, pages this step completes included (so a prefill chunk's pages do not stay for the next).
  bool release_when_offloaded = false;

  // What the decision counted (added to the layer's RetrievalStats).
  bool selection_step = false;
  int64_t correction_checks = 0;
  int64_t correction_triggers = 0;
};

}  // namespace freekv
