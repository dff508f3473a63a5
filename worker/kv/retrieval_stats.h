// Counters of retrieval for one sequence and layer, summed over steps: what the policy decided
// (selection steps, correction checks and triggers) and what carrying it out moved (recalls from the
// kvstore into this worker's memory, and the time spent waiting for them).
#pragma once

#include <cstdint>

namespace freekv {

struct RetrievalStats {
  int64_t pages_recalled = 0;        // (KV head, page) chunks brought in from the kvstore
  int64_t bytes_recalled = 0;
  int64_t sync_recalls = 0;          // recalls waited for before attention could run
  int64_t async_recalls = 0;         // recalls that ran while the model computed
  double recall_wait_seconds = 0;    // time spent blocked on recalls
  int64_t correction_checks = 0;     // (step, KV head) pairs whose query similarity was checked
  int64_t correction_triggers = 0;   // ... that fell below τ and were re-selected
  int64_t selection_steps = 0;       // steps that attended a selected budget

  RetrievalStats& operator+=(const RetrievalStats& o);
  RetrievalStats operator-(const RetrievalStats& o) const;  // the counts between two snapshots
};

}  // namespace freekv
