#include "worker/kv/tiered_kv.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/check.h"

namespace freekv {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

RecallStats& RecallStats::operator+=(const RecallStats& o) {
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

RecallStats RecallStats::operator-(const RecallStats& o) const {
  RecallStats d = *this;
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

TieredKv::TieredKv(KvBlockPool* pool, KvStoreBinding store, int64_t selected_slots, DigestKind digest, bool keep_digests)
    : local_(pool), store_(store), selected_slots_(selected_slots), digest_kind_(digest), keep_digests_(keep_digests) {
  const KvGeometry& g = pool->geometry();
  slots_.resize(size_t(g.n_layers));
  slot_pages_.resize(size_t(g.n_layers));
  digests_.resize(size_t(g.n_layers));
  for (int64_t l = 0; l < g.n_layers; ++l) {
    slots_[size_t(l)].assign(size_t(g.n_kv_heads), std::vector<uint8_t>(size_t(selected_slots) * g.chunk_bytes()));
    slot_pages_[size_t(l)].assign(size_t(g.n_kv_heads), std::vector<int32_t>(size_t(selected_slots), -1));
    digests_[size_t(l)].resize(size_t(g.n_kv_heads));
  }
}

TieredKv::~TieredKv() = default;

absl::Status TieredKv::attach(int64_t committed_pages, int64_t stored_tokens, RecallStats* stats) {
  local_.adopt_released(committed_pages);
  offloaded_pages_ = committed_pages;
  stored_tokens_ = stored_tokens;
  for (int64_t l = 0; l < geometry().n_layers; ++l) FREEKV_RETURN_IF_ERROR(restore_all(l, stats));
  return commit(nullptr, 0);  // digests of the adopted pages
}

absl::Status TieredKv::store_pending_token(int32_t id) {
  if (store_.client == nullptr) return absl::OkStatus();
  FREEKV_RETURN_IF_ERROR(store_.client->append_tokens(store_.session, &id, 1));
  ++stored_tokens_;
  return absl::OkStatus();
}

absl::Status TieredKv::commit(const int32_t* ids, int64_t n) {
  const KvGeometry& g = geometry();
  const int64_t first = local_.n_tokens();
  local_.commit(n);
  const int64_t complete = n_tokens() / g.page_tokens;
  if (keep_digests_) {
    for (int64_t p = digested_pages_; p < complete; ++p) {
      for (int64_t l = 0; l < g.n_layers; ++l) {
        const uint8_t* block = local_.block(l, p);
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          std::vector<float>& d = digests_[size_t(l)][size_t(h)];
          d.resize(size_t((p + 1) * 2 * g.head_dim));
          float* upper = d.data() + p * 2 * g.head_dim;
          page_digest(block + size_t(h) * g.chunk_bytes(), g.dtype, g.page_tokens, g.head_dim, digest_kind_, upper,
                      upper + g.head_dim);
        }
      }
    }
    digested_pages_ = complete;
  }
  if (store_.client == nullptr) return absl::OkStatus();
  // Ids the kvstore already holds (replayed after a resume) are not appended twice.
  const int64_t skip = std::clamp<int64_t>(stored_tokens_ - first, 0, n);
  if (n - skip > 0) {
    FREEKV_RETURN_IF_ERROR(store_.client->append_tokens(store_.session, ids + skip, n - skip));
    stored_tokens_ += n - skip;
  }
  return offload_pages(offloaded_pages_, complete);
}

absl::Status TieredKv::offload_pages(int64_t first_page, int64_t end_page) {
  const KvGeometry& g = geometry();
  constexpr int64_t kBatch = 16;  // pages per round trip to the kvstore
  for (int64_t l = 0; l < g.n_layers; ++l) {
    for (int64_t p = first_page; p < end_page; p += kBatch) {
      const int n = int(std::min(kBatch, end_page - p));
      FREEKV_ASSIGN_OR_RETURN(std::vector<uint8_t*> dst, store_.client->pages_for_write(store_.session, int(l), p, n));
      for (int i = 0; i < n; ++i) std::memcpy(dst[size_t(i)], local_.block(l, p + i), g.block_bytes());
      FREEKV_RETURN_IF_ERROR(store_.client->commit_pages(store_.session, int(l), p, n));
    }
  }
  offloaded_pages_ = end_page;
  return absl::OkStatus();
}

absl::Status TieredKv::recall_into(int64_t layer, const std::vector<RecallItem>& items,
                                   const std::function<uint8_t*(int64_t item)>& dest, RecallStats* stats) {
  if (items.empty()) return absl::OkStatus();
  if (store_.client == nullptr) {
    return absl::FailedPreconditionError("a released page is needed but no kvstore holds it");
  }
  const size_t chunk = geometry().chunk_bytes();
  const size_t per_recall = store_.client->max_recall_items();
  for (size_t b = 0; b < items.size(); b += per_recall) {
    std::vector<RecallItem> part(items.begin() + b, items.begin() + std::min(items.size(), b + per_recall));
    auto t0 = std::chrono::steady_clock::now();
    FREEKV_ASSIGN_OR_RETURN(uint64_t ticket, store_.client->post_recall(store_.session, int(layer), part));
    FREEKV_RETURN_IF_ERROR(store_.client->wait_recall(ticket, [&](int64_t i, const uint8_t* src) {
      std::memcpy(dest(int64_t(b) + i), src, chunk);
    }));
    stats->recall_wait_seconds += seconds_since(t0);
    stats->sync_recalls += 1;
    stats->pages_recalled += int64_t(part.size());
    stats->bytes_recalled += int64_t(part.size() * chunk);
  }
  return absl::OkStatus();
}

absl::Status TieredKv::restore_all(int64_t layer, RecallStats* stats) {
  const KvGeometry& g = geometry();
  const int64_t pages = (n_tokens() + g.page_tokens - 1) / g.page_tokens;
  std::vector<RecallItem> items;
  std::vector<uint8_t*> blocks;
  for (int64_t p = 0; p < pages; ++p) {
    if (local_.resident(layer, p)) continue;
    FREEKV_ASSIGN_OR_RETURN(uint8_t* block, local_.restore(layer, p));
    for (int64_t h = 0; h < g.n_kv_heads; ++h) {
      items.push_back({uint32_t(h), uint32_t(p)});
      blocks.push_back(block + size_t(h) * g.chunk_bytes());
    }
  }
  return recall_into(layer, items, [&](int64_t i) { return blocks[size_t(i)]; }, stats);
}

uint8_t* TieredKv::slot_chunk(int64_t layer, int64_t head, int64_t slot) {
  return slots_[size_t(layer)][size_t(head)].data() + size_t(slot) * geometry().chunk_bytes();
}

absl::Status TieredKv::fill_now(int64_t layer, const std::vector<SlotFill>& fills, RecallStats* stats) {
  const size_t chunk = geometry().chunk_bytes();
  std::vector<RecallItem> items;
  std::vector<uint8_t*> dests;
  for (const SlotFill& f : fills) {
    uint8_t* dst = slot_chunk(layer, f.head, f.slot);
    if (local_.resident(layer, f.page)) {
      std::memcpy(dst, local_.block(layer, f.page) + size_t(f.head) * chunk, chunk);
    } else {
      items.push_back({uint32_t(f.head), uint32_t(f.page)});
      dests.push_back(dst);
    }
  }
  FREEKV_RETURN_IF_ERROR(recall_into(layer, items, [&](int64_t i) { return dests[size_t(i)]; }, stats));
  for (const SlotFill& f : fills) slot_pages_[size_t(layer)][size_t(f.head)][size_t(f.slot)] = f.page;
  return absl::OkStatus();
}

absl::StatusOr<PendingFill> TieredKv::fill_async(int64_t layer, std::vector<SlotFill> fills, RecallStats* stats) {
  PendingFill pending;
  if (fills.empty()) return pending;
  if (store_.client == nullptr || fills.size() > store_.client->max_recall_items()) {
    FREEKV_RETURN_IF_ERROR(fill_now(layer, fills, stats));  // nothing to overlap with
    return pending;
  }
  std::vector<RecallItem> items;
  for (const SlotFill& f : fills) items.push_back({uint32_t(f.head), uint32_t(f.page)});
  FREEKV_ASSIGN_OR_RETURN(pending.ticket, store_.client->post_recall(store_.session, int(layer), items));
  pending.layer = layer;
  pending.fills = std::move(fills);
  stats->async_recalls += 1;
  return pending;
}

absl::Status TieredKv::finish(PendingFill* pending, RecallStats* stats) {
  if (!pending->active()) return absl::OkStatus();
  const size_t chunk = geometry().chunk_bytes();
  const int64_t layer = pending->layer;
  auto t0 = std::chrono::steady_clock::now();
  absl::Status s = store_.client->wait_recall(pending->ticket, [&](int64_t i, const uint8_t* src) {
    const SlotFill& f = pending->fills[size_t(i)];
    std::memcpy(slot_chunk(layer, f.head, f.slot), src, chunk);
  });
  stats->recall_wait_seconds += seconds_since(t0);
  if (s.ok()) {
    for (const SlotFill& f : pending->fills) slot_pages_[size_t(layer)][size_t(f.head)][size_t(f.slot)] = f.page;
    stats->pages_recalled += int64_t(pending->fills.size());
    stats->bytes_recalled += int64_t(pending->fills.size() * chunk);
  }
  *pending = PendingFill{};
  return s;
}

void TieredKv::clear_slots(int64_t layer) {
  for (auto& head : slot_pages_[size_t(layer)]) std::fill(head.begin(), head.end(), -1);
}

PagedKv TieredKv::view_all(int64_t layer, int64_t tokens, std::vector<const void*>* chunk_ptrs) {
  return local_.view(layer, tokens, chunk_ptrs);
}

PagedKv TieredKv::view_budget(int64_t layer, int64_t tokens, int64_t sink_pages, int64_t window_first,
                              const std::vector<std::vector<int32_t>>* local_selected,
                              std::vector<const void*>* chunk_ptrs) {
  const KvGeometry& g = geometry();
  const int64_t pages = (tokens + g.page_tokens - 1) / g.page_tokens;
  const size_t chunk = g.chunk_bytes();
  // Every head attends the same number of middle pages: selection takes min(k, candidates) for each.
  auto middle_count = [&](int64_t h) -> int64_t {
    if (local_selected != nullptr) return int64_t((*local_selected)[size_t(h)].size());
    int64_t n = 0;
    for (int32_t p : slot_pages_[size_t(layer)][size_t(h)]) n += p >= 0 ? 1 : 0;
    return n;
  };
  const int64_t middle = middle_count(0);
  const int64_t n_slots = sink_pages + middle + (pages - window_first);
  chunk_ptrs->resize(size_t(g.n_kv_heads * n_slots));
  for (int64_t h = 0; h < g.n_kv_heads; ++h) {
    FREEKV_CHECK(middle_count(h) == middle, "heads attend different numbers of selected pages");
    const void** row = chunk_ptrs->data() + h * n_slots;
    int64_t s = 0;
    for (int64_t p = 0; p < sink_pages; ++p) row[s++] = local_.block(layer, p) + size_t(h) * chunk;
    if (local_selected != nullptr) {
      for (int32_t p : (*local_selected)[size_t(h)]) row[s++] = local_.block(layer, p) + size_t(h) * chunk;
    } else {
      const auto& held = slot_pages_[size_t(layer)][size_t(h)];
      for (size_t slot = 0; slot < held.size(); ++slot)
        if (held[slot] >= 0) row[s++] = slot_chunk(layer, h, int64_t(slot));
    }
    for (int64_t p = window_first; p < pages; ++p) row[s++] = local_.block(layer, p) + size_t(h) * chunk;
  }
  PagedKv kv;
  kv.chunks = chunk_ptrs->data();
  kv.n_slots = n_slots;
  kv.page_tokens = g.page_tokens;
  kv.head_dim = g.head_dim;
  kv.n_kv_heads = g.n_kv_heads;
  // Only the last slot (the current page) may be partial.
  kv.n_tokens = (n_slots - 1) * g.page_tokens + (tokens - (pages - 1) * g.page_tokens);
  kv.dtype = g.dtype;
  return kv;
}

}  // namespace freekv
