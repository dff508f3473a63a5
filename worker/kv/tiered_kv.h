// The KV of one sequence across tiers, and the one place where residency changes: TieredKv carries
// out the LayerPlans that retrieval policies decide (DESIGN §2: worker/retrieval decides, worker/kv
// applies).
//
// - Local pages (SequenceKv, blocks of the worker's KvBlockPool): every page while it is written; the
//   sinks and the recent window always; the rest only as long as the policy keeps them (full and quest
//   keep everything, the offloading policies release a page once the kvstore holds it).
// - Selected slots: per layer, `selected_slots` blocks of the same pool (so they count against the
//   worker's KV memory); slot s of KV head h holds that head's chunk of one page, and each head may hold
//   different pages in the same slot.
// - The kvstore (optional): every page is offloaded exactly once, when it completes (the partial last
//   page stays here), with its key statistics, and the token ids after it. Released pages come back by
//   recall: into slots (fetch now, or in the background for the next step), into local pages (sinks and
//   window of a resumed session), or streamed in groups through a few transient blocks when dense
//   attention needs them (a prefill chunk attending the earlier context).
// - Digests: per completed page and KV head, the key bounds selection scores (for selecting policies),
//   computed from the page's key statistics; a resumed session reads those from the kvstore.
//
// So a sequence under an offloading policy never needs more local blocks per layer than sinks + window +
// the pages of one prefill chunk, plus its selected slots and one streaming group.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "kernels/ops.h"
#include "worker/kv/kv_cache.h"
#include "worker/kv/layer_plan.h"
#include "worker/kv/recall_queue.h"
#include "worker/kv/retrieval_stats.h"

namespace freekv {

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
  RecallQueue* recalls = nullptr;  // null: nothing is offloaded (full, quest and streaming still work)
  SessionRef session;
  KvstoreClient* client() const { return recalls != nullptr ? recalls->client() : nullptr; }
};

class TieredKv {
 public:
  // Pages released pages stream back through, at most, per dense attention piece.
  static constexpr int64_t kStreamGroupPages = 16;

  // selected_slots: slots per layer and KV head (0 for policies that attend resident pages only);
  // keep_digests: keep page digests of `digest` kind (selecting policies).
  TieredKv(KvBlockPool* pool, KvStoreBinding store, int64_t selected_slots, DigestKind digest, bool keep_digests);
  // Finishes its background recalls (their errors no longer matter) and returns every block.
  ~TieredKv();
  TieredKv(const TieredKv&) = delete;
  TieredKv& operator=(const TieredKv&) = delete;

  const KvGeometry& geometry() const { return local_.geometry(); }
  int64_t n_tokens() const { return local_.n_tokens(); }
  bool offloads() const { return store_.recalls != nullptr; }

  // ---- writing new tokens: reserve local pages, write rows, commit once every layer has its rows ----
  absl::Status reserve(int64_t n);
  uint8_t* k_row(int64_t layer, int64_t head, int64_t pos) { return local_.k_row(layer, head, pos); }
  uint8_t* v_row(int64_t layer, int64_t head, int64_t pos) { return local_.v_row(layer, head, pos); }
  // Records n tokens (ids[n]); every page they completed gets its digests and, with a kvstore, is
  // offloaded in every layer with its key statistics, and then the ids are appended there. Candidates
  // of a layer whose last plan said release_when_offloaded leave local memory once offloaded.
  absl::Status commit(const int32_t* ids, int64_t n);

  // ---- kvstore sessions ----
  // Resumes a session: its first `committed_pages` pages (every layer) become this sequence's KV, held
  // in the kvstore only; their digests come from the stored key statistics. `stored_tokens` ids are
  // already there and are not appended again when the caller replays those past the last page.
  absl::Status attach(int64_t committed_pages, int64_t stored_tokens, RetrievalStats* stats);
  // Stores a token id that has no KV yet (the last sampled token), so a resumed session replays it.
  absl::Status store_pending_token(int32_t id);
  // Token ids the kvstore holds for this session.
  int64_t stored_tokens() const { return stored_tokens_; }
  // Undoes stores past keep_tokens ids (a failed turn): later ids and the pages they complete go.
  absl::Status truncate_store(int64_t keep_tokens);

  // ---- what policies read ----
  bool resident(int64_t layer, int64_t page) const { return local_.resident(layer, page); }
  // The kvstore holds the page (every layer), so releasing it loses nothing.
  bool offloaded(int64_t page) const { return offloads() && page < offloaded_pages_; }
  // Digests of one KV head: [digested_pages()][2 (upper, lower)][head_dim] fp32.
  const float* digests(int64_t layer, int64_t head) const { return digests_[size_t(layer)][size_t(head)].data(); }
  int64_t digested_pages() const { return digested_pages_; }
  int64_t selected_slots() const { return selected_slots_; }
  // slot -> page it holds, or will hold once the recalls in flight land (-1 empty); one layer and head.
  const std::vector<int32_t>& slot_pages(int64_t layer, int64_t head) const {
    return slot_pages_[size_t(layer)][size_t(head)];
  }

  // ---- carrying out a plan ----
  // Before attention: lands the layer's background recall, releases plan.release, makes sinks and
  // window resident, fills slots (fetch_now, from a resident page or by a recall waited
  // for here). A failed recall leaves the slots it was filling empty.
  absl::Status prepare(const LayerPlan& plan, RetrievalStats* stats);
  // A budget plan's view for attention (sinks, each head's middle pages, window; heads with fewer middle
  // pages have empty slots). chunk_ptrs is the caller's storage.
  absl::StatusOr<PagedKv> budget_view(const LayerPlan& plan, std::vector<const void*>* chunk_ptrs);
  // A dense plan's attention, in pieces: every released page streamed from the kvstore in groups of up
  // to kStreamGroupPages (attend(piece, -1): all of it lies before the step's tokens), then the resident
  // pages (attend(piece, causal_base) with the step's queries causal).
  using AttendPiece = std::function<void(const PagedKv& piece, int64_t causal_base)>;
  absl::Status attend_dense(const LayerPlan& plan, const AttendPiece& attend, RetrievalStats* stats);
  // After attention: starts plan.fetch_next (slots holding resident pages are filled now, the rest by a
  // background recall that lands at the layer's next prepare()).
  absl::Status after_attention(const LayerPlan& plan, RetrievalStats* stats);
  // Lands every background recall, continuing past failures; returns the first. stats: [n_layers].
  absl::Status drain(std::vector<RetrievalStats>* stats);

  // ---- memory ----
  // Blocks of the worker's KV pool this sequence holds now (local pages, slots, a streaming group),
  // and the most it held at once.
  int64_t blocks_held() const { return local_.blocks_held() + slot_blocks_held_ + stream_blocks_held_; }
  int64_t peak_blocks_held() const { return peak_blocks_; }
  // Bytes of digests kept (they grow with the context: 2 × head_dim fp32 per page and KV head).
  int64_t digest_bytes() const;

  // Read-only views for verification: a resident local page's block (nullptr when released) and a
  // selected slot's chunk [2][page_tokens][head_dim] (nullptr before the layer has slots).
  const uint8_t* local_block(int64_t layer, int64_t page) {
    return local_.resident(layer, page) ? local_.block(layer, page) : nullptr;
  }
  const uint8_t* slot_data(int64_t layer, int64_t head, int64_t slot);

 private:
  struct Pending {  // the layer's background recall
    uint64_t handle = 0;
    std::vector<std::pair<int32_t, SlotMove>> moves;  // (head, move) it is filling
    bool active() const { return handle != 0; }
  };

  absl::Status check_plan(const LayerPlan& plan) const;
  uint8_t* slot_chunk(int64_t layer, int64_t head, int64_t slot);
  absl::Status ensure_slots(int64_t layer);
  absl::Status finish_pending(int64_t layer, RetrievalStats* stats);
  // Synchronous recall of chunks into `destinations`, counted in stats.
  absl::Status recall_now(int64_t layer, std::vector<RecallItem> items, std::vector<uint8_t*> destinations,
                          RetrievalStats* stats);
  absl::Status complete_pages(int64_t first_page, int64_t end_page);
  void note_usage() { peak_blocks_ = std::max(peak_blocks_, blocks_held()); }

  KvBlockPool* pool_;
  SequenceKv local_;
  KvStoreBinding store_;
  int64_t selected_slots_;
  DigestKind digest_kind_;
  bool keep_digests_;
  std::vector<std::vector<int32_t>> slot_blocks_;               // [layer] -> pool block per slot
  std::vector<std::vector<std::vector<int32_t>>> slot_pages_;   // [layer][head][slot]
  std::vector<std::vector<std::vector<float>>> digests_;        // [layer][head] -> [pages][2][hd]
  std::vector<Pending> pending_;                                // [layer]
  std::vector<std::pair<int64_t, int64_t>> release_span_;       // [layer] candidates to free once offloaded
  int64_t digested_pages_ = 0;
  int64_t offloaded_pages_ = 0;
  int64_t stored_tokens_ = 0;  // token ids the kvstore holds for this session
  int64_t slot_blocks_held_ = 0, stream_blocks_held_ = 0, peak_blocks_ = 0;
};

}  // namespace freekv
