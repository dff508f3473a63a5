// The KV of one sequence across tiers — the only place residency changes (DESIGN §2: worker/kv
// applies what worker/retrieval decides).
//
// - Local pages (SequenceKv): every page while it is written, and for the policies that keep only a
//   budget, afterwards just the sinks and the recent window.
// - Selected slots: per layer and KV head, `selected_slots` chunk-sized slots holding the pages the
//   policy chose; each head may hold different pages in the same slot.
// - The kvstore (optional): every page is offloaded exactly once, when it completes (the partial last
//   page stays here), with the token ids; released pages come back from it by recall.
// - Digests: per completed page and KV head, the key bounds that selection scores.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/ops.h"
#include "worker/kv/kv_cache.h"
#include "worker/kv/kvstore_client.h"

namespace freekv {

// Counters per layer, summed over steps. Bytes are chunk bytes moved into this worker's memory.
struct RecallStats {
  int64_t pages_recalled = 0;        // (KV head, page) chunks brought in
  int64_t bytes_recalled = 0;
  int64_t sync_recalls = 0;          // recalls waited for before attention could run
  int64_t async_recalls = 0;         // recalls that ran while the model computed
  double recall_wait_seconds = 0;    // time spent blocked on recalls
  int64_t correction_checks = 0;     // (step, KV head) pairs whose query similarity was checked
  int64_t correction_triggers = 0;   // ... that fell below τ and were re-selected
  int64_t selection_steps = 0;       // steps that attended a selected budget

  RecallStats& operator+=(const RecallStats& o);
  RecallStats operator-(const RecallStats& o) const;  // the counts between two snapshots
};

struct SlotFill {
  int32_t head;
  int32_t slot;
  int32_t page;  // logical page to place in the slot
};

// A recall posted to the kvstore and not yet applied.
struct PendingFill {
  int64_t layer = -1;
  uint64_t ticket = 0;
  std::vector<SlotFill> fills;
  bool active() const { return layer >= 0; }
};

// The kvstore's description of sessions of this geometry.
inline KvSessionGeometry session_geometry(const KvGeometry& g) {
  KvSessionGeometry s;
  s.n_layers = uint32_t(g.n_layers);
  s.n_kv_heads = uint32_t(g.n_kv_heads);
  s.head_dim = uint32_t(g.head_dim);
  s.page_tokens = uint32_t(g.page_tokens);
  s.dtype = g.dtype;
  return s;
}

struct KvStoreBinding {
  KvstoreClient* client = nullptr;  // null: nothing is offloaded (full and streaming still work)
  SessionRef session;
};

class TieredKv {
 public:
  TieredKv(KvBlockPool* pool, KvStoreBinding store, int64_t selected_slots, DigestKind digest, bool keep_digests);
  ~TieredKv();
  TieredKv(const TieredKv&) = delete;
  TieredKv& operator=(const TieredKv&) = delete;

  const KvGeometry& geometry() const { return local_.geometry(); }
  int64_t n_tokens() const { return local_.n_tokens(); }
  bool offloads() const { return store_.client != nullptr; }

  // Writing new tokens: reserve local pages, write rows, then commit once every layer has its rows.
  absl::Status reserve(int64_t n) { return local_.reserve(n); }
  uint8_t* k_row(int64_t layer, int64_t head, int64_t pos) { return local_.k_row(layer, head, pos); }
  uint8_t* v_row(int64_t layer, int64_t head, int64_t pos) { return local_.v_row(layer, head, pos); }
  // Records n tokens (ids[n]); offloads every page they completed, in every layer, with its digests.
  absl::Status commit(const int32_t* ids, int64_t n);

  // Resumes a kvstore session: its first `committed_pages` pages (every layer) become this sequence's
  // KV, brought in to compute their digests; `stored_tokens` ids are already in the kvstore and are not
  // appended again when the caller replays the ones past the last committed page.
  absl::Status attach(int64_t committed_pages, int64_t stored_tokens, RecallStats* stats);
  // Stores a token id that has no KV yet (the last sampled token), so a resumed session replays it.
  absl::Status store_pending_token(int32_t id);

  // ---- residency ----
  bool resident(int64_t layer, int64_t page) const { return local_.resident(layer, page); }
  void release(int64_t layer, int64_t page) { local_.release(layer, page); }
  // Brings every released page of the layer back from the kvstore (synchronously).
  absl::Status restore_all(int64_t layer, RecallStats* stats);

  // ---- digests: [completed pages][2 (upper, lower)][head_dim] fp32 of one KV head ----
  const float* digests(int64_t layer, int64_t head) const { return digests_[size_t(layer)][size_t(head)].data(); }
  int64_t digested_pages() const { return digested_pages_; }

  // ---- selected slots ----
  int64_t selected_slots() const { return selected_slots_; }
  // slot -> page held (-1 empty) for one layer and head.
  const std::vector<int32_t>& slot_pages(int64_t layer, int64_t head) const {
    return slot_pages_[size_t(layer)][size_t(head)];
  }
  // Fills slots now: from the local page where it is resident, else by a recall waited for here.
  absl::Status fill_now(int64_t layer, const std::vector<SlotFill>& fills, RecallStats* stats);
  // Posts a recall for the fills and returns it; the slots change only in finish().
  absl::StatusOr<PendingFill> fill_async(int64_t layer, std::vector<SlotFill> fills, RecallStats* stats);
  absl::Status finish(PendingFill* pending, RecallStats* stats);
  void clear_slots(int64_t layer);

  // Read-only views for verification: a resident local page's block (nullptr when released) and a
  // selected slot's chunk [2][page_tokens][head_dim].
  const uint8_t* local_block(int64_t layer, int64_t page) {
    return local_.resident(layer, page) ? local_.block(layer, page) : nullptr;
  }
  const uint8_t* slot_data(int64_t layer, int64_t head, int64_t slot) { return slot_chunk(layer, head, slot); }

  // ---- what attention reads ----
  // `tokens` counts the tokens attention sees: the committed ones plus the step's new ones.
  // Every page of the layer (all must be resident).
  PagedKv view_all(int64_t layer, int64_t tokens, std::vector<const void*>* chunk_ptrs);
  // Sinks [0, sink_pages) and window [window_first, P) from local pages, between them for each head
  // either its selected slots (local_selected == nullptr) or the local pages local_selected[head].
  PagedKv view_budget(int64_t layer, int64_t tokens, int64_t sink_pages, int64_t window_first,
                      const std::vector<std::vector<int32_t>>* local_selected, std::vector<const void*>* chunk_ptrs);

 private:
  uint8_t* slot_chunk(int64_t layer, int64_t head, int64_t slot);
  absl::Status recall_into(int64_t layer, const std::vector<RecallItem>& items,
                           const std::function<uint8_t*(int64_t item)>& dest, RecallStats* stats);
  absl::Status offload_pages(int64_t first_page, int64_t end_page);

  SequenceKv local_;
  KvStoreBinding store_;
  int64_t selected_slots_;
  DigestKind digest_kind_;
  bool keep_digests_;
  std::vector<std::vector<std::vector<uint8_t>>> slots_;        // [layer][head] -> [slots][chunk bytes]
  std::vector<std::vector<std::vector<int32_t>>> slot_pages_;   // [layer][head][slot]
  std::vector<std::vector<std::vector<float>>> digests_;        // [layer][head] -> [pages][2][hd]
  int64_t digested_pages_ = 0;
  int64_t offloaded_pages_ = 0;
  int64_t stored_tokens_ = 0;  // token ids the kvstore holds for this session
};

}  // namespace freekv
