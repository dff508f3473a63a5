#include "worker/kv/retrieval_stats.h"

namespace freekv {

RetrievalStats& RetrievalStats::operator+=(const RetrievalStats& o) {
  pages_recalled += o.pages_recalled;
  bytes_recalled += o.bytes_recalled;
  sync_recalls += o.sync_recalls;
  async_recalls += o.async_recalls;
  recall_wait_seconds += o.recall_wait_seconds;
  correction_checks += o.correction_checks;
  correction_triggers += o.correction_triggers;
  selection_steps += o.selection_steps;
  return *this;
}

RetrievalStats RetrievalStats::operator-(const RetrievalStats& o) const {
  RetrievalStats d = *this;
  d.pages_recalled -= o.pages_recalled;
  d.bytes_recalled -= o.bytes_recalled;
  d.sync_recalls -= o.sync_recalls;
  d.async_recalls -= o.async_recalls;
  d.recall_wait_seconds -= o.recall_wait_seconds;
  d.correction_checks -= o.correction_checks;
  d.correction_triggers -= o.correction_triggers;
  d.selection_steps -= o.selection_steps;
  return d;
}

}  // namespace freekv
