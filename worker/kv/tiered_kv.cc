#include "worker/kv/tiered_kv.h"

#include <algorithm>
#include <cstring>

namespace freekv {

static_assert(kKeyStatRows == int64_t(dp::kKeyStatRows), "the kernels' key statistics must be what the kvstore stores");

TieredKv::TieredKv(KvBlockPool* pool, KvStoreBinding store, int64_t selected_slots, DigestKind digest, bool keep_digests)
    : pool_(pool), local_(pool), store_(store), selected_slots_(selected_slots), digest_kind_(digest),
      keep_digests_(keep_digests) {
  const KvGeometry& g = pool->geometry();
  slot_blocks_.resize(size_t(g.n_layers));
  slot_pages_.resize(size_t(g.n_layers));
  digests_.resize(size_t(g.n_layers));
  pending_.resize(size_t(g.n_layers));
  release_span_.assign(size_t(g.n_layers), {0, 0});
  for (int64_t l = 0; l < g.n_layers; ++l) {
    slot_pages_[size_t(l)].assign(size_t(g.n_kv_heads), std::vector<int32_t>(size_t(selected_slots), -1));
    digests_[size_t(l)].resize(size_t(g.n_kv_heads));
  }
}

TieredKv::~TieredKv() {
  // The recall queue holds pointers into our slots until a recall lands: land them before the blocks go.
  for (Pending& p : pending_) {
    if (p.active()) store_.recalls->finish(p.handle, nullptr).IgnoreError();
  }
  for (const auto& layer : slot_blocks_)
    for (int32_t b : layer) pool_->release(b);
}

int64_t TieredKv::digest_bytes() const {
  const KvGeometry& g = geometry();
  return digested_pages_ * g.n_layers * g.n_kv_heads * 2 * g.head_dim * int64_t(sizeof(float)) * (keep_digests_ ? 1 : 0);
}

absl::Status TieredKv::reserve(int64_t n) {
  FREEKV_RETURN_IF_ERROR(local_.reserve(n));
  note_usage();
  return absl::OkStatus();
}

// ---- offload and digests ----

absl::Status TieredKv::commit(const int32_t* ids, int64_t n) {
  const int64_t first = local_.n_tokens();
  local_.commit(n);
  FREEKV_RETURN_IF_ERROR(complete_pages(std::max(digested_pages_, offloaded_pages_), n_tokens() / geometry().page_tokens));
  if (!offloads()) return absl::OkStatus();
  for (size_t l = 0; l < release_span_.size(); ++l) {
    const auto [first, end] = release_span_[l];
    for (int64_t p = first; p < std::min(end, offloaded_pages_); ++p) local_.release(int64_t(l), p);
  }
  // The ids go after their pages: a failure in between leaves pages past the stored ids, which a resume
  // ignores. Ids the kvstore already holds (replayed after a resume) are not appended twice.
  const int64_t skip = std::clamp<int64_t>(stored_tokens_ - first, 0, n);
  if (n - skip > 0) {
    FREEKV_RETURN_IF_ERROR(store_.client()->append_tokens(store_.session, ids + skip, n - skip));
    stored_tokens_ += n - skip;
  }
  return absl::OkStatus();
}

// Pages [first_page, end_page) just completed: key statistics of every (layer, head), digests from
// them, and with a kvstore the page and its statistics written into a pool block and committed.
absl::Status TieredKv::complete_pages(int64_t first_page, int64_t end_page) {
  if (first_page >= end_page || (!keep_digests_ && !offloads())) return absl::OkStatus();
  const KvGeometry& g = geometry();
  const dp::SessionGeometry sg = session_geometry(g);
  const int64_t stats_floats = kKeyStatRows * g.head_dim;
  std::vector<float> scratch(size_t(g.n_kv_heads * stats_floats));
  constexpr int64_t kBatch = dp::kMaxAllocPages;  // pages per round trip to the kvstore
  for (int64_t l = 0; l < g.n_layers; ++l) {
    for (int64_t p = first_page; p < end_page; p += kBatch) {
      const int n = int(std::min(kBatch, end_page - p));
      std::vector<uint8_t*> dst;
      if (offloads()) {
        FREEKV_ASSIGN_OR_RETURN(dst, store_.client()->pages_for_write(store_.session, int(l), p, n));
      }
      for (int i = 0; i < n; ++i) {
        const uint8_t* block = local_.block(l, p + i);
        // Statistics go straight after the page in the pool block, or into scratch without a kvstore.
        float* stats = scratch.data();
        if (offloads()) {
          std::memcpy(dst[size_t(i)], block, g.block_bytes());
          stats = reinterpret_cast<float*>(dst[size_t(i)] + sg.page_bytes());
        }
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          float* st = stats + h * stats_floats;
          page_key_stats(block + size_t(h) * g.chunk_bytes(), g.dtype, g.page_tokens, g.head_dim, st);
          if (!keep_digests_) continue;
          std::vector<float>& d = digests_[size_t(l)][size_t(h)];
          d.resize(size_t((p + i + 1) * 2 * g.head_dim));
          float* upper = d.data() + (p + i) * 2 * g.head_dim;
          digest_from_stats(st, g.head_dim, digest_kind_, upper, upper + g.head_dim);
        }
      }
      if (offloads()) FREEKV_RETURN_IF_ERROR(store_.client()->commit_pages(store_.session, int(l), p, n));
    }
  }
  digested_pages_ = keep_digests_ ? end_page : 0;
  if (offloads()) offloaded_pages_ = end_page;
  return absl::OkStatus();
}

absl::Status TieredKv::attach(int64_t committed_pages, int64_t stored_tokens, RetrievalStats* stats) {
  local_.adopt_released(committed_pages);
  offloaded_pages_ = committed_pages;
  stored_tokens_ = stored_tokens;
  if (!keep_digests_ || committed_pages == 0) return absl::OkStatus();
  // Digests from the stored key statistics: no page crosses into this worker.
  const KvGeometry& g = geometry();
  const int64_t stats_floats = kKeyStatRows * g.head_dim;
  std::vector<float> all(size_t(committed_pages * g.n_kv_heads * stats_floats));
  for (int64_t l = 0; l < g.n_layers; ++l) {
    RecallRequest r;
    r.session = store_.session;
    r.layer = int(l);
    r.source = RecallSource::kKeyStats;
    r.item_bytes = size_t(stats_floats) * sizeof(float);
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      for (int64_t p = 0; p < committed_pages; ++p) {
        r.items.push_back({uint32_t(h), uint32_t(p)});
        r.destinations.push_back(reinterpret_cast<uint8_t*>(all.data() + (h * committed_pages + p) * stats_floats));
      }
    }
    FREEKV_RETURN_IF_ERROR(store_.recalls->fetch(r, &stats->recall_wait_seconds));
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      std::vector<float>& d = digests_[size_t(l)][size_t(h)];
      d.resize(size_t(committed_pages * 2 * g.head_dim));
      for (int64_t p = 0; p < committed_pages; ++p) {
        float* upper = d.data() + p * 2 * g.head_dim;
        digest_from_stats(all.data() + (h * committed_pages + p) * stats_floats, g.head_dim, digest_kind_, upper,
                          upper + g.head_dim);
      }
    }
  }
  digested_pages_ = committed_pages;
  return absl::OkStatus();
}

absl::Status TieredKv::store_pending_token(int32_t id) {
  if (!offloads()) return absl::OkStatus();
  FREEKV_RETURN_IF_ERROR(store_.client()->append_tokens(store_.session, &id, 1));
  ++stored_tokens_;
  return absl::OkStatus();
}

absl::Status TieredKv::truncate_store(int64_t keep_tokens) {
  if (!offloads() || keep_tokens >= stored_tokens_) return absl::OkStatus();
  FREEKV_RETURN_IF_ERROR(store_.client()->truncate(store_.session, uint64_t(keep_tokens)));
  stored_tokens_ = keep_tokens;
  offloaded_pages_ = std::min(offloaded_pages_, keep_tokens / geometry().page_tokens);
  return absl::OkStatus();
}

// ---- recall ----

absl::Status TieredKv::recall_now(int64_t layer, std::vector<RecallItem> items, std::vector<uint8_t*> destinations,
                                  RetrievalStats* stats) {
  if (items.empty()) return absl::OkStatus();
  if (!offloads()) {
    return absl::FailedPreconditionError(absl::StrCat("page ", items[0].page, " of layer ", layer,
                                                      " is needed but was dropped and no kvstore holds it"));
  }
  RecallRequest r;
  r.session = store_.session;
  r.layer = int(layer);
  r.item_bytes = geometry().chunk_bytes();
  const int64_t n = int64_t(items.size());
  r.items = std::move(items);
  r.destinations = std::move(destinations);
  FREEKV_RETURN_IF_ERROR(store_.recalls->fetch(r, &stats->recall_wait_seconds));
  stats->sync_recalls += 1;
  stats->pages_recalled += n;
  stats->bytes_recalled += n * int64_t(geometry().chunk_bytes());
  return absl::OkStatus();
}

absl::Status TieredKv::finish_pending(int64_t layer, RetrievalStats* stats) {
  Pending& p = pending_[size_t(layer)];
  if (!p.active()) return absl::OkStatus();
  absl::Status s = store_.recalls->finish(p.handle, &stats->recall_wait_seconds);
  if (s.ok()) {
    stats->pages_recalled += int64_t(p.moves.size());
    stats->bytes_recalled += int64_t(p.moves.size() * geometry().chunk_bytes());
  } else {
    for (const auto& [head, m] : p.moves) slot_pages_[size_t(layer)][size_t(head)][size_t(m.slot)] = -1;
  }
  p = Pending{};
  return s;
}

absl::Status TieredKv::drain(std::vector<RetrievalStats>* stats) {
  absl::Status first;
  for (size_t l = 0; l < pending_.size(); ++l) first.Update(finish_pending(int64_t(l), &(*stats)[l]));
  return first;
}

// ---- slots ----

absl::Status TieredKv::ensure_slots(int64_t layer) {
  std::vector<int32_t>& blocks = slot_blocks_[size_t(layer)];
  if (int64_t(blocks.size()) == selected_slots_) return absl::OkStatus();
  while (int64_t(blocks.size()) < selected_slots_) {
    FREEKV_ASSIGN_OR_RETURN(int32_t b, pool_->alloc());
    blocks.push_back(b);
    ++slot_blocks_held_;
  }
  note_usage();
  return absl::OkStatus();
}

uint8_t* TieredKv::slot_chunk(int64_t layer, int64_t head, int64_t slot) {
  return pool_->block(slot_blocks_[size_t(layer)][size_t(slot)]) + size_t(head) * geometry().chunk_bytes();
}

const uint8_t* TieredKv::slot_data(int64_t layer, int64_t head, int64_t slot) {
  if (int64_t(slot_blocks_[size_t(layer)].size()) <= slot) return nullptr;
  return slot_chunk(layer, head, slot);
}

// ---- carrying out plans ----

// A plan names only pages the layer has and slots it has: anything else is a bug in the policy, which
// fails the sequence instead of touching memory it does not own.
absl::Status TieredKv::check_plan(const LayerPlan& plan) const {
  const KvGeometry& g = geometry();
  const int64_t pages = (plan.tokens + g.page_tokens - 1) / g.page_tokens;
  auto bad = [&](const std::string& what) {
    return absl::InternalError(absl::StrCat("retrieval plan for layer ", plan.layer, ": ", what));
  };
  if (plan.layer < 0 || plan.layer >= g.n_layers || pages > local_.n_pages() || plan.new_tokens < 0 ||
      plan.new_tokens > plan.tokens) {
    return bad(absl::StrCat("layer or tokens out of range (", plan.tokens, " tokens, ", local_.n_pages(), " pages)"));
  }
  if (!plan.heads.empty() && int64_t(plan.heads.size()) != g.n_kv_heads) return bad("one entry per KV head expected");
  auto page_ok = [&](int64_t p) { return p >= 0 && p < pages; };
  auto slot_ok = [&](int64_t s) { return s >= 0 && s < selected_slots_; };
  for (int32_t p : plan.release) {
    if (!page_ok(p)) return bad(absl::StrCat("releases page ", p));
  }
  for (const HeadPlan& hp : plan.heads) {
    for (int32_t p : hp.middle) {
      if (!page_ok(p)) return bad(absl::StrCat("attends page ", p));
    }
    for (const auto* moves : {&hp.fetch_now, &hp.fetch_next}) {
      for (const SlotMove& m : *moves) {
        if (!slot_ok(m.slot) || !page_ok(m.page)) return bad(absl::StrCat("moves page ", m.page, " into slot ", m.slot));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status TieredKv::prepare(const LayerPlan& plan, RetrievalStats* stats) {
  FREEKV_RETURN_IF_ERROR(check_plan(plan));
  const KvGeometry& g = geometry();
  const int64_t layer = plan.layer, pages = (plan.tokens + g.page_tokens - 1) / g.page_tokens;
  const size_t chunk = g.chunk_bytes();
  // What the plan counts on being in the slots includes the recall started after the last attention.
  FREEKV_RETURN_IF_ERROR(finish_pending(layer, stats));
  for (int32_t p : plan.release) {
    if (offloads() && !offloaded(p)) {
      return absl::InternalError(absl::StrCat("plan releases page ", p, " of layer ", layer, " before the kvstore holds it"));
    }
    local_.release(layer, p);
  }
  release_span_[size_t(layer)] = plan.release_when_offloaded ? std::make_pair(plan.sink_pages, plan.window_first)
                                                             : std::make_pair(int64_t(0), int64_t(0));
  // Sinks and window stay resident (a resumed session brings them back here, once).
  std::vector<RecallItem> items;
  std::vector<uint8_t*> dests;
  auto keep_resident = [&](int64_t p) -> absl::Status {
    if (local_.resident(layer, p)) return absl::OkStatus();
    FREEKV_ASSIGN_OR_RETURN(uint8_t* block, local_.restore(layer, p));
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      items.push_back({uint32_t(h), uint32_t(p)});
      dests.push_back(block + size_t(h) * chunk);
    }
    return absl::OkStatus();
  };
  for (int64_t p = 0; p < pages; ++p) {
    if (plan.keep_all_resident || p < plan.sink_pages || p >= plan.window_first) FREEKV_RETURN_IF_ERROR(keep_resident(p));
  }
  note_usage();
  FREEKV_RETURN_IF_ERROR(recall_now(layer, std::move(items), std::move(dests), stats));

  if (plan.heads.empty()) return absl::OkStatus();
  if (plan.middle_from_slots) FREEKV_RETURN_IF_ERROR(ensure_slots(layer));
  items.clear();
  dests.clear();
  std::vector<std::pair<int32_t, SlotMove>> recalled;
  for (size_t h = 0; h < plan.heads.size(); ++h) {
    std::vector<int32_t>& held = slot_pages_[size_t(layer)][h];
    for (const SlotMove& m : plan.heads[h].fetch_now) {
      uint8_t* dst = slot_chunk(layer, int64_t(h), m.slot);
      held[size_t(m.slot)] = m.page;
      if (local_.resident(layer, m.page)) {
        std::memcpy(dst, local_.block(layer, m.page) + h * chunk, chunk);
      } else {
        items.push_back({uint32_t(h), uint32_t(m.page)});
        dests.push_back(dst);
        recalled.push_back({int32_t(h), m});
      }
    }
  }
  absl::Status s = recall_now(layer, std::move(items), std::move(dests), stats);
  if (!s.ok()) {  // nothing the failed recall was filling counts as held
    for (const auto& [head, m] : recalled) slot_pages_[size_t(layer)][size_t(head)][size_t(m.slot)] = -1;
  }
  return s;
}

absl::StatusOr<PagedKv> TieredKv::budget_view(const LayerPlan& plan, std::vector<const void*>* chunk_ptrs) {
  const KvGeometry& g = geometry();
  const int64_t layer = plan.layer, pages = (plan.tokens + g.page_tokens - 1) / g.page_tokens;
  const size_t chunk = g.chunk_bytes();
  if (plan.dense || plan.window_first >= pages || int64_t(plan.heads.size()) != g.n_kv_heads) {
    return absl::InternalError("budget_view needs a budget plan with a window and one entry per KV head");
  }
  size_t middle = 0;
  for (const HeadPlan& hp : plan.heads) middle = std::max(middle, hp.middle.size());
  const int64_t n_slots = plan.sink_pages + int64_t(middle) + (pages - plan.window_first);
  chunk_ptrs->assign(size_t(g.n_kv_heads * n_slots), nullptr);  // heads with fewer middle pages keep empty slots
  for (int64_t h = 0; h < g.n_kv_heads; ++h) {
    const void** row = chunk_ptrs->data() + h * n_slots;
    int64_t s = 0;
    for (int64_t p = 0; p < plan.sink_pages; ++p) row[s++] = local_.block(layer, p) + size_t(h) * chunk;
    const std::vector<int32_t>& held = slot_pages_[size_t(layer)][size_t(h)];
    for (int32_t p : plan.heads[size_t(h)].middle) {
      if (plan.middle_from_slots) {
        const auto it = std::find(held.begin(), held.end(), p);
        if (it == held.end()) {
          return absl::InternalError(absl::StrCat("layer ", layer, " head ", h, ": page ", p, " is attended but in no slot"));
        }
        row[s++] = slot_chunk(layer, h, it - held.begin());
      } else {
        if (!local_.resident(layer, p)) {
          return absl::InternalError(absl::StrCat("layer ", layer, ": page ", p, " is attended but not resident"));
        }
        row[s++] = local_.block(layer, p) + size_t(h) * chunk;
      }
    }
    s = plan.sink_pages + int64_t(middle);
    for (int64_t p = plan.window_first; p < pages; ++p) row[s++] = local_.block(layer, p) + size_t(h) * chunk;
  }
  PagedKv kv;
  kv.chunks = chunk_ptrs->data();
  kv.n_slots = n_slots;
  kv.page_tokens = g.page_tokens;
  kv.head_dim = g.head_dim;
  kv.n_kv_heads = g.n_kv_heads;
  kv.n_tokens = (n_slots - 1) * g.page_tokens + (plan.tokens - (pages - 1) * g.page_tokens);  // last slot partial
  kv.dtype = g.dtype;
  return kv;
}

absl::Status TieredKv::attend_dense(const LayerPlan& plan, const AttendPiece& attend, RetrievalStats* stats) {
  const KvGeometry& g = geometry();
  const int64_t layer = plan.layer, pt = g.page_tokens, pages = (plan.tokens + pt - 1) / pt;
  const int64_t past = plan.tokens - plan.new_tokens;
  const size_t chunk = g.chunk_bytes();
  // A windowed layer attends from the page its first query's window starts in.
  const int64_t first_page = plan.sliding_window > 0 ? plan.window_first : 0;
  std::vector<int32_t> released, kept;
  for (int64_t p = first_page; p < pages; ++p) (local_.resident(layer, p) ? kept : released).push_back(int32_t(p));
  if (plan.sliding_window > 0 && !released.empty()) {
    // The window's pages are kept resident (prepare), so the resident pages are contiguous, as the
    // window's lower limit in the kernel needs.
    return absl::InternalError(absl::StrCat("layer ", layer, ": page ", released.front(), " of the sliding window is not resident"));
  }
  std::vector<const void*> ptrs;
  auto piece = [&](const std::vector<const void*>& chunks, int64_t n_slots, int64_t n_tokens) {
    PagedKv kv;
    kv.sliding_window = plan.sliding_window;
    kv.chunks = chunks.data();
    kv.n_slots = n_slots;
    kv.page_tokens = pt;
    kv.head_dim = g.head_dim;
    kv.n_kv_heads = g.n_kv_heads;
    kv.n_tokens = n_tokens;
    kv.dtype = g.dtype;
    return kv;
  };
  if (!released.empty()) {
    if ((int64_t(released.back()) + 1) * pt > past) {
      return absl::InternalError(absl::StrCat("layer ", layer, ": page ", released.back(),
                                              " is released but holds tokens of this step"));
    }
    // A few transient blocks of the pool carry the released pages, group by group.
    std::vector<int32_t> group;
    absl::Status alloc;
    while (int64_t(group.size()) < std::min<int64_t>(kStreamGroupPages, int64_t(released.size()))) {
      auto b = pool_->alloc();
      if (!b.ok()) {
        alloc = b.status();
        break;
      }
      group.push_back(*b);
    }
    stream_blocks_held_ = int64_t(group.size());
    note_usage();
    absl::Status s = group.empty() ? alloc : absl::OkStatus();
    for (size_t first = 0; s.ok() && first < released.size(); first += group.size()) {
      const size_t n = std::min(group.size(), released.size() - first);
      std::vector<RecallItem> items;
      std::vector<uint8_t*> dests;
      ptrs.assign(size_t(g.n_kv_heads) * n, nullptr);
      for (size_t i = 0; i < n; ++i) {
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          uint8_t* dst = pool_->block(group[i]) + size_t(h) * chunk;
          items.push_back({uint32_t(h), uint32_t(released[first + i])});
          dests.push_back(dst);
          ptrs[size_t(h) * n + i] = dst;
        }
      }
      s = recall_now(layer, std::move(items), std::move(dests), stats);
      if (s.ok()) attend(piece(ptrs, int64_t(n), int64_t(n) * pt), -1);
    }
    for (int32_t b : group) pool_->release(b);
    stream_blocks_held_ = 0;
    FREEKV_RETURN_IF_ERROR(s);
  }
  // The resident pages, packed: every released page lies before the step's tokens, so the step's
  // queries see packed index j iff the token's position is at most their own.
  const int64_t n = int64_t(kept.size());
  ptrs.assign(size_t(g.n_kv_heads * n), nullptr);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < g.n_kv_heads; ++h) ptrs[size_t(h * n + i)] = local_.block(layer, kept[size_t(i)]) + size_t(h) * chunk;
  const int64_t last_tokens = plan.tokens - (pages - 1) * pt;
  attend(piece(ptrs, n, (n - 1) * pt + last_tokens), past - (first_page + int64_t(released.size())) * pt);
  return absl::OkStatus();
}

absl::Status TieredKv::after_attention(const LayerPlan& plan, RetrievalStats* stats) {
  FREEKV_RETURN_IF_ERROR(check_plan(plan));
  const KvGeometry& g = geometry();
  const int64_t layer = plan.layer;
  const size_t chunk = g.chunk_bytes();
  RecallRequest r;
  r.session = store_.session;
  r.layer = int(layer);
  r.item_bytes = chunk;
  Pending pending;
  for (size_t h = 0; h < plan.heads.size(); ++h) {
    for (const SlotMove& m : plan.heads[h].fetch_next) {
      uint8_t* dst = slot_chunk(layer, int64_t(h), m.slot);
      slot_pages_[size_t(layer)][h][size_t(m.slot)] = m.page;  // what the slot will hold once this lands
      if (local_.resident(layer, m.page)) {
        std::memcpy(dst, local_.block(layer, m.page) + h * chunk, chunk);
      } else {
        r.items.push_back({uint32_t(h), uint32_t(m.page)});
        r.destinations.push_back(dst);
        pending.moves.push_back({int32_t(h), m});
      }
    }
  }
  if (r.items.empty()) return absl::OkStatus();
  if (!offloads() || r.items.size() > store_.client()->max_recall_items()) {
    // Nothing to overlap with, or too large for one background recall: fetch now (attention is done).
    std::vector<RecallItem> items = std::move(r.items);
    absl::Status s = recall_now(layer, std::move(items), std::move(r.destinations), stats);
    if (!s.ok()) {
      for (const auto& [head, m] : pending.moves) slot_pages_[size_t(layer)][size_t(head)][size_t(m.slot)] = -1;
    }
    return s;
  }
  auto handle = store_.recalls->post(std::move(r));
  if (!handle.ok()) {
    for (const auto& [head, m] : pending.moves) slot_pages_[size_t(layer)][size_t(head)][size_t(m.slot)] = -1;
    return handle.status();
  }
  pending.handle = *handle;
  pending_[size_t(layer)] = std::move(pending);
  stats->async_recalls += 1;
  return absl::OkStatus();
}

}  // namespace freekv
