#include "kvstore/pool.h"

#include <glog/logging.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include "common/units.h"

namespace freekv::kvstore {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint64_t unix_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

std::string geometry_text(const dp::SessionGeometry& g) {
  return absl::StrCat("layers=", g.n_layers, " kv_heads=", g.n_kv_heads, " head_dim=", g.head_dim,
                      " page_tokens=", g.page_tokens, " dtype=", std::string(dtype_name(g.dtype)));
}

std::string geometry_diff(const dp::SessionGeometry& have, const dp::SessionGeometry& want) {
  std::string d;
  auto add = [&](const char* what, const std::string& a, const std::string& b) {
    if (a != b) absl::StrAppend(&d, d.empty() ? "" : ", ", what, " ", a, " vs ", b);
  };
  add("layers", std::to_string(have.n_layers), std::to_string(want.n_layers));
  add("kv_heads", std::to_string(have.n_kv_heads), std::to_string(want.n_kv_heads));
  add("head_dim", std::to_string(have.head_dim), std::to_string(want.head_dim));
  add("page_tokens", std::to_string(have.page_tokens), std::to_string(want.page_tokens));
  add("dtype", std::string(dtype_name(have.dtype)), std::string(dtype_name(want.dtype)));
  return d;
}

// Where the regions of a pool of this size go. Returns false when not even one block fits.
struct Layout {
  uint64_t session_table_offset, free_list_offset, blocks_offset, block_count;
};
bool compute_layout(uint64_t pool_bytes, uint64_t block_bytes, uint32_t max_sessions, Layout* l) {
  l->session_table_offset = dp::kPoolHeaderBytes;
  l->free_list_offset = l->session_table_offset + round_up(uint64_t(max_sessions) * sizeof(dp::SessionEntry), kPage);
  if (pool_bytes <= l->free_list_offset) return false;
  const uint64_t avail = pool_bytes - l->free_list_offset;
  uint64_t n = avail / (block_bytes + sizeof(uint32_t));
  while (n > 0 && round_up(n * sizeof(uint32_t), kPage) + n * block_bytes > avail) --n;
  if (n == 0 || n > 0xFFFFFFFEull) return false;
  l->block_count = n;
  l->blocks_offset = l->free_list_offset + round_up(n * sizeof(uint32_t), kPage);
  return true;
}

}  // namespace

absl::Status Pool::check_geometry(const dp::SessionGeometry& g, uint64_t block_bytes) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("bad session geometry (", geometry_text(g), "): ", what));
  };
  if (g.n_layers < 1 || g.n_layers > 4096) return bad("layers must be 1..4096");
  if (g.n_kv_heads < 1 || g.n_kv_heads > 1024) return bad("kv_heads must be 1..1024");
  if (g.head_dim < 1 || g.head_dim > 4096) return bad("head_dim must be 1..4096");
  if (g.page_tokens < 1 || g.page_tokens > 65536) return bad("page_tokens must be 1..65536");
  if (g.dtype != DType::kF32 && g.dtype != DType::kF16 && g.dtype != DType::kBF16) return bad("unknown dtype");
  if (g.stored_page_bytes() > block_bytes) {
    return bad(absl::StrCat("one page takes ", format_size(g.stored_page_bytes()),
                            " (kv_heads × 2 × page_tokens × head_dim × dtype size, plus kv_heads × 3 × head_dim × 4 "
                            "bytes of key statistics), more than the pool's block size ",
                            format_size(block_bytes), "; start freekv-kvstore with --block-size ≥ ",
                            format_size(round_up(g.stored_page_bytes(), kPage))));
  }
  if (dp::max_pages_per_layer(block_bytes, g.n_layers) < 1) return bad("too many layers for this block size");
  return absl::OkStatus();
}

absl::Status Pool::check_session_id(const std::string& id) {
  if (id.empty() || id.size() > dp::kSessionIdMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("session id must be 1..", dp::kSessionIdMax, " bytes (got ", id.size(), ")"));
  }
  if (id.find('\0') != std::string::npos) return absl::InvalidArgumentError("session id contains a NUL byte");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Pool>> Pool::open(const PoolOptions& o) {
  FREEKV_RETURN_IF_ERROR(SharedMemory::check_name(o.name));
  if (o.name.size() > 200) {
    return absl::InvalidArgumentError("--pool-name must be at most 200 characters (channel segments add a suffix)");
  }
  if (o.block_bytes < kPage || o.block_bytes % kPage != 0 || o.block_bytes > (1ull << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("--block-size ", o.block_bytes,
                                                   " must be a multiple of 4 KiB between 4 KiB and 1 GiB"));
  }
  if (o.max_sessions < 1 || o.max_sessions > 1000000) {
    return absl::InvalidArgumentError("--max-sessions must be 1..1000000");
  }
  Layout layout{};
  if (!compute_layout(o.pool_bytes, o.block_bytes, o.max_sessions, &layout)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--pool-size ", format_size(o.pool_bytes), " holds no block of ", format_size(o.block_bytes), " after the ",
        format_size(dp::kPoolHeaderBytes + round_up(uint64_t(o.max_sessions) * sizeof(dp::SessionEntry), kPage)),
        " session table (", o.max_sessions, " sessions); raise --pool-size or lower --max-sessions"));
  }

  std::unique_ptr<Pool> pool(new Pool());
  auto created = SharedMemory::create(o.name, o.pool_bytes);
  if (created.ok()) {
    pool->shm_ = std::move(created).value();
    FREEKV_RETURN_IF_ERROR(pool->shm_->lock_exclusive());
    FREEKV_RETURN_IF_ERROR(pool->init_fresh(o));
    pool->created_ = true;
  } else if (absl::IsAlreadyExists(created.status())) {
    FREEKV_ASSIGN_OR_RETURN(pool->shm_, SharedMemory::open(o.name, /*writable=*/true));
    FREEKV_RETURN_IF_ERROR(pool->shm_->lock_exclusive());
    absl::Status v = pool->validate_existing(o);
    if (absl::IsAborted(v)) {
      // Never finished initialising (a kvstore died while creating it): it cannot hold any session.
      LOG(WARNING) << "/dev/shm/" << o.name << " was never fully initialised (" << v.message()
                   << "); creating it again";
      pool->shm_.reset();
      FREEKV_RETURN_IF_ERROR(SharedMemory::unlink(o.name));
      return open(o);
    }
    FREEKV_RETURN_IF_ERROR(v);
  } else {
    return created.status();
  }
  pool->hdr_ = reinterpret_cast<dp::PoolHeader*>(pool->shm_->data());
  pool->shm_->advise_huge_pages();

  if (o.mlock) {
    absl::Status s = pool->shm_->lock_in_memory();
    if (s.ok()) {
      pool->mlocked_ = true;
    } else {
      LOG(WARNING) << "pool not locked in memory, its pages may be swapped out: " << s.message();
    }
  }
  pool->hdr_->starts.fetch_add(1);
  pool->rebuild();
  return pool;
}

Pool::~Pool() = default;

absl::Status Pool::init_fresh(const PoolOptions& o) {
  Layout l{};
  compute_layout(o.pool_bytes, o.block_bytes, o.max_sessions, &l);
  auto* h = reinterpret_cast<dp::PoolHeader*>(shm_->data());
  // The segment is zero-filled by ftruncate, so every session slot starts free.
  std::memcpy(h->magic, dp::kPoolMagic, sizeof(h->magic));
  h->abi_version = dp::kAbiVersion;
  h->endian_check = dp::kEndianCheck;
  h->max_sessions = o.max_sessions;
  h->segment_bytes = o.pool_bytes;
  h->block_bytes = o.block_bytes;
  h->block_count = l.block_count;
  h->session_entry_bytes = sizeof(dp::SessionEntry);
  h->index_slots = dp::kIndexSlots;
  h->token_slots = dp::kTokenSlots;
  h->session_table_offset = l.session_table_offset;
  h->free_list_offset = l.free_list_offset;
  h->blocks_offset = l.blocks_offset;
  h->created_unix_ns = unix_ns();
  h->next_generation.store(1);
  h->free_top.store(0);
  h->starts.store(0);
  h->ready.store(1, std::memory_order_release);
  LOG(INFO) << "created pool /dev/shm/" << o.name << ": " << format_size(o.pool_bytes) << ", " << l.block_count
            << " blocks of " << format_size(o.block_bytes) << ", " << o.max_sessions << " session slots";
  return absl::OkStatus();
}

absl::Status Pool::validate_existing(const PoolOptions& o) {
  const std::string where = absl::StrCat("/dev/shm/", o.name);
  if (shm_->size() < dp::kPoolHeaderBytes) {
    return absl::FailedPreconditionError(absl::StrCat(where, " is ", shm_->size(),
                                                      " bytes, too small to be a freekv pool; remove it or pick another --pool-name"));
  }
  const auto* h = reinterpret_cast<const dp::PoolHeader*>(shm_->data());
  static const char kZero[8] = {};
  if (std::memcmp(h->magic, kZero, 8) == 0 && h->ready.load() == 0) {
    return absl::AbortedError("empty header");
  }
  if (std::memcmp(h->magic, dp::kPoolMagic, 8) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, " exists but is not a freekv pool (bad magic); refusing to touch it: remove it or pick another --pool-name"));
  }
  if (h->endian_check != dp::kEndianCheck) {
    return absl::FailedPreconditionError(absl::StrCat(where, " was written with another byte order; refusing it"));
  }
  if (h->abi_version != dp::kAbiVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, " has pool format version ", h->abi_version, " but this freekv-kvstore reads version ", dp::kAbiVersion,
        "; refusing to reinterpret it. Start the matching kvstore, or remove the segment (freekv-kvstore "
        "--pool-name ", o.name, " --remove-pool) to lose its sessions"));
  }
  if (h->ready.load(std::memory_order_acquire) != 1) return absl::AbortedError("ready flag not set");

  std::string diff;
  auto differ = [&](const std::string& what, const std::string& seg, const std::string& flag) {
    absl::StrAppend(&diff, diff.empty() ? "" : "; ", what, " is ", seg, " in the segment but ", flag, " here");
  };
  if (h->segment_bytes != o.pool_bytes) {
    differ("pool size (--pool-size)", absl::StrCat(h->segment_bytes, " bytes (", format_size(h->segment_bytes), ")"),
           absl::StrCat(o.pool_bytes, " bytes (", format_size(o.pool_bytes), ")"));
  }
  if (h->block_bytes != o.block_bytes) {
    differ("block size (--block-size)", format_size(h->block_bytes), format_size(o.block_bytes));
  }
  if (h->max_sessions != o.max_sessions) {
    differ("session slots (--max-sessions)", std::to_string(h->max_sessions), std::to_string(o.max_sessions));
  }
  if (h->session_entry_bytes != sizeof(dp::SessionEntry) || h->index_slots != dp::kIndexSlots ||
      h->token_slots != dp::kTokenSlots) {
    differ("session entry layout", absl::StrCat(h->session_entry_bytes, "/", h->index_slots, "/", h->token_slots),
           absl::StrCat(sizeof(dp::SessionEntry), "/", dp::kIndexSlots, "/", dp::kTokenSlots));
  }
  if (!diff.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, " has another geometry: ", diff,
        ". Refusing to reinterpret it: restart with the segment's values, or remove it (losing its sessions)"));
  }
  Layout l{};
  if (!compute_layout(h->segment_bytes, h->block_bytes, h->max_sessions, &l) || l.block_count != h->block_count ||
      l.blocks_offset != h->blocks_offset || l.free_list_offset != h->free_list_offset ||
      l.session_table_offset != h->session_table_offset || shm_->size() < h->segment_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, " has a damaged header (its offsets or file size do not match its geometry); refusing it"));
  }
  LOG(INFO) << "reattached pool " << where << " (" << format_size(h->segment_bytes) << ", " << h->block_count
            << " blocks of " << format_size(h->block_bytes) << ", start #" << h->starts.load() + 1 << ")";
  return absl::OkStatus();
}

dp::SessionEntry* Pool::entry(uint32_t slot) const {
  return reinterpret_cast<dp::SessionEntry*>(base() + hdr_->session_table_offset) + slot;
}

uint32_t* Pool::free_stack() const { return reinterpret_cast<uint32_t*>(base() + hdr_->free_list_offset); }

std::atomic<uint32_t>* Pool::index_entry(const dp::SessionEntry& e, uint64_t g) const {
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  const uint32_t v = e.index_blocks[g / epb].load(std::memory_order_acquire);
  if (v == 0 || v - 1 >= hdr_->block_count) return nullptr;
  return reinterpret_cast<std::atomic<uint32_t>*>(block(v - 1)) + g % epb;
}

void Pool::rebuild() {
  std::unique_lock lock(mu_);
  const uint64_t count = hdr_->block_count;
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  const uint64_t tpb = dp::tokens_per_block(hdr_->block_bytes);
  state_.assign(count, kFree);
  by_id_.clear();
  free_slots_.clear();
  pending_.clear();
  n_data_ = n_meta_ = 0;
  uint64_t dropped_entries = 0;

  auto claim = [&](uint32_t v, BlockState as) -> bool {
    if (v == 0 || v - 1 >= count || state_[v - 1] != kFree) return false;
    state_[v - 1] = as;
    (as == kData ? n_data_ : n_meta_)++;
    return true;
  };

  for (uint32_t slot = hdr_->max_sessions; slot-- > 0;) {
    dp::SessionEntry* e = entry(slot);
    const uint32_t st = e->state.load();
    if (st != dp::kSessionLive) {
      if (st != dp::kSessionFree) {
        LOG(ERROR) << "session slot " << slot << " has an unknown state " << st << "; treating it as free";
        e->state.store(dp::kSessionFree);
      }
      free_slots_.push_back(slot);
      continue;
    }
    std::string problem;
    std::string id;
    if (e->id_len < 1 || e->id_len > dp::kSessionIdMax) {
      problem = "bad id length";
    } else {
      id.assign(e->id, e->id_len);
      absl::Status g = check_geometry(e->geometry(), hdr_->block_bytes);
      if (!g.ok()) problem = std::string(g.message());
      else if (e->generation == 0 || e->generation >= hdr_->next_generation.load()) problem = "bad generation";
      else if (by_id_.count(id)) problem = "duplicate session id";
    }
    if (!problem.empty()) {
      LOG(ERROR) << "session slot " << slot << " ('" << id << "') is damaged (" << problem << "); dropping it";
      e->state.store(dp::kSessionFree);
      free_slots_.push_back(slot);
      continue;
    }
    if (e->ephemeral != 0) {  // its worker's attachment ended with the previous kvstore: its blocks go free
      LOG(INFO) << "session '" << id << "' belonged to a worker attachment of the previous kvstore; closing it";
      e->state.store(dp::kSessionFree);
      free_slots_.push_back(slot);
      continue;
    }
    const uint32_t L = e->n_layers;
    const uint64_t max_entries = uint64_t(L) * dp::max_pages_per_layer(hdr_->block_bytes, L);
    for (uint32_t k = 0; k < dp::kIndexSlots; ++k) {
      const uint32_t v = e->index_blocks[k].load();
      if (v == 0) continue;
      if (!claim(v, kMeta)) {
        LOG(ERROR) << "session '" << id << "': index block slot " << k << " holds an invalid or shared block " << v - 1
                   << "; dropping the pages it listed";
        e->index_blocks[k].store(0);
        continue;
      }
      auto* entries = reinterpret_cast<std::atomic<uint32_t>*>(block(v - 1));
      for (uint64_t i = 0; i < epb; ++i) {
        const uint32_t x = entries[i].load(std::memory_order_relaxed);
        if (x == 0) continue;
        const uint64_t g = uint64_t(k) * epb + i;
        if (g >= max_entries || !claim(x, kData)) {
          entries[i].store(0);
          ++dropped_entries;
        }
      }
    }
    uint64_t n_tokens = std::min<uint64_t>(e->n_tokens.load(), dp::max_tokens(hdr_->block_bytes));
    for (uint32_t k = 0; k < dp::kTokenSlots; ++k) {
      const uint32_t v = e->token_blocks[k].load();
      const bool needed = uint64_t(k) * tpb < n_tokens;
      if (v == 0) {
        if (needed) {
          LOG(ERROR) << "session '" << id << "': token block " << k << " is missing; keeping the first " << k * tpb
                     << " of " << n_tokens << " token ids";
          n_tokens = k * tpb;
        }
        continue;
      }
      if (!claim(v, kMeta)) {
        LOG(ERROR) << "session '" << id << "': token block slot " << k << " holds an invalid or shared block";
        e->token_blocks[k].store(0);
        if (needed) n_tokens = k * tpb;
      }
    }
    if (n_tokens != e->n_tokens.load()) e->n_tokens.store(n_tokens);
    by_id_[id] = slot;
  }
  if (dropped_entries > 0) {
    LOG(ERROR) << dropped_entries << " page-table entries pointed at invalid or shared blocks and were dropped";
  }
  // Free stack: lowest block on top.
  uint32_t* stack = free_stack();
  uint64_t top = 0;
  for (uint64_t b = count; b-- > 0;) {
    if (state_[b] == kFree) stack[top++] = uint32_t(b);
  }
  hdr_->free_top.store(top);
  LOG(INFO) << "pool " << name() << ": " << by_id_.size() << " sessions, " << n_data_ << " committed pages, "
            << n_meta_ << " metadata blocks, " << top << " of " << count << " blocks free";
}

uint32_t Pool::pop_block(BlockState as) {
  uint64_t top = hdr_->free_top.load(std::memory_order_relaxed);
  CHECK_GT(top, 0u);
  const uint32_t b = free_stack()[top - 1];
  CHECK_LT(uint64_t(b), hdr_->block_count);
  CHECK_EQ(int(state_[b]), int(kFree)) << "free stack holds a used block " << b;
  hdr_->free_top.store(top - 1, std::memory_order_relaxed);
  state_[b] = as;
  if (as == kData) ++n_data_;
  if (as == kMeta) ++n_meta_;
  return b;
}

void Pool::push_block(uint32_t b) {
  CHECK_LT(uint64_t(b), hdr_->block_count);
  CHECK_NE(int(state_[b]), int(kFree)) << "double free of block " << b;
  if (state_[b] == kData) --n_data_;
  if (state_[b] == kMeta) --n_meta_;
  state_[b] = kFree;
  uint64_t top = hdr_->free_top.load(std::memory_order_relaxed);
  free_stack()[top] = b;
  hdr_->free_top.store(top + 1, std::memory_order_relaxed);
}

absl::Status Pool::pool_full(uint64_t need) const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "KV pool full: this request needs ", need, " blocks of ", format_size(hdr_->block_bytes), " but ", free_count(),
      " of ", hdr_->block_count, " are free (", pending_.size(),
      " handed out and not committed); close sessions or start freekv-kvstore with a larger --pool-size"));
}

void Pool::touch(const dp::SessionEntry& e) const {
  const_cast<dp::SessionEntry&>(e).last_use_unix_ns.store(unix_ns(), std::memory_order_relaxed);
}

absl::StatusOr<const dp::SessionEntry*> Pool::resolve_locked(SessionRef ref) const {
  if (ref.slot >= hdr_->max_sessions) {
    return absl::NotFoundError(absl::StrCat("unknown session handle (slot ", ref.slot, " is out of range)"));
  }
  const dp::SessionEntry* e = entry(ref.slot);
  if (e->state.load(std::memory_order_acquire) != dp::kSessionLive || e->generation != ref.generation) {
    return absl::NotFoundError(absl::StrCat("session (slot ", ref.slot, ", generation ", ref.generation,
                                            ") is closed or unknown"));
  }
  return e;
}

// OK when `writer_epoch` is still the session's epoch; FAILED_PRECONDITION naming both otherwise.
static absl::Status check_writer(const dp::SessionEntry& e, uint64_t writer_epoch) {
  const uint64_t epoch = e.epoch.load(std::memory_order_acquire);
  if (writer_epoch == epoch) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "session '", std::string(e.id, e.id_len), "' was opened again since this writer opened it (epoch ", writer_epoch,
      ", now ", epoch, "): another worker owns it, and this one's writes are refused"));
}

absl::StatusOr<dp::SessionEntry*> Pool::resolve_writer(SessionRef ref) const {
  FREEKV_ASSIGN_OR_RETURN(const dp::SessionEntry* e, resolve_locked(ref));
  FREEKV_RETURN_IF_ERROR(check_writer(*e, ref.epoch));
  return const_cast<dp::SessionEntry*>(e);
}

int64_t Pool::committed_block_locked(const dp::SessionEntry& e, uint32_t layer, uint64_t page) const {
  if (layer >= e.n_layers || page >= dp::max_pages_per_layer(hdr_->block_bytes, e.n_layers)) return -1;
  const std::atomic<uint32_t>* slot = index_entry(e, page * e.n_layers + layer);
  if (slot == nullptr) return -1;
  const uint32_t x = slot->load(std::memory_order_acquire);
  if (x == 0 || x - 1 >= hdr_->block_count || state_[x - 1] != kData) return -1;
  return int64_t(x - 1);
}

absl::Status Pool::check_page_range(const dp::SessionEntry& e, int32_t layer, int64_t first, uint32_t n) const {
  if (layer < 0 || uint32_t(layer) >= e.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is out of range (session has ", e.n_layers,
                                                   " layers)"));
  }
  if (n < 1 || n > dp::kMaxAllocPages) {
    return absl::InvalidArgumentError(absl::StrCat("page count ", n, " must be 1..", dp::kMaxAllocPages));
  }
  const uint64_t max_pages = dp::max_pages_per_layer(hdr_->block_bytes, e.n_layers);
  if (first < 0 || uint64_t(first) + n > max_pages) {
    return absl::InvalidArgumentError(absl::StrCat("pages [", first, ", ", first + int64_t(n),
                                                   ") are out of range: a session of ", e.n_layers,
                                                   " layers holds at most ", max_pages, " pages per layer"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Pool::Opened> Pool::open_session(const std::string& id, const dp::SessionGeometry& g,
                                                bool create_if_missing, uint32_t ephemeral_owner, bool must_create) {
  FREEKV_RETURN_IF_ERROR(check_session_id(id));
  FREEKV_RETURN_IF_ERROR(check_geometry(g, hdr_->block_bytes));
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it != by_id_.end()) {
    if (must_create) return absl::AlreadyExistsError(absl::StrCat("session '", id, "' already exists"));
    dp::SessionEntry* e = entry(it->second);
    if (!(e->geometry() == g)) {
      return absl::InvalidArgumentError(absl::StrCat("session '", id, "' exists with another geometry (",
                                                     geometry_diff(e->geometry(), g),
                                                     ", stored vs requested); open it with the model it was made with"));
    }
    touch(*e);
    e->epoch.fetch_add(1, std::memory_order_acq_rel);  // this caller is the writer from now on
    return Opened{summarize(it->second, false), false};
  }
  if (!create_if_missing) {
    return absl::NotFoundError(absl::StrCat("session '", id, "' does not exist (open it with create_if_missing)"));
  }
  if (free_slots_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat("session table full (", hdr_->max_sessions,
                                                     " sessions); close sessions or raise --max-sessions"));
  }
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  dp::SessionEntry* e = entry(slot);
  for (auto& v : e->index_blocks) v.store(0, std::memory_order_relaxed);
  for (auto& v : e->token_blocks) v.store(0, std::memory_order_relaxed);
  e->id_len = uint32_t(id.size());
  std::memset(e->id, 0, sizeof(e->id));
  std::memcpy(e->id, id.data(), id.size());
  e->n_layers = g.n_layers;
  e->n_kv_heads = g.n_kv_heads;
  e->head_dim = g.head_dim;
  e->page_tokens = g.page_tokens;
  e->dtype = uint32_t(g.dtype);
  e->ephemeral = ephemeral_owner != 0 ? 1 : 0;
  e->generation = hdr_->next_generation.fetch_add(1);
  e->epoch.store(1, std::memory_order_relaxed);
  e->created_unix_ns = unix_ns();
  e->last_use_unix_ns.store(e->created_unix_ns);
  e->n_tokens.store(0);
  e->state.store(dp::kSessionLive, std::memory_order_release);
  by_id_[id] = slot;
  if (ephemeral_owner != 0) ephemeral_owner_[slot] = ephemeral_owner;
  return Opened{summarize(slot, false), true};
}

absl::StatusOr<uint64_t> Pool::close_session(const std::string& id, uint64_t writer_epoch) {
  FREEKV_RETURN_IF_ERROR(check_session_id(id));
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("session '", id, "' does not exist"));
  if (writer_epoch != 0) FREEKV_RETURN_IF_ERROR(check_writer(*entry(it->second), writer_epoch));
  return close_slot(it->second);
}

uint64_t Pool::close_slot(uint32_t slot) {
  dp::SessionEntry* e = entry(slot);
  // Unpublish first: a crash from here on frees everything at the next start.
  e->state.store(dp::kSessionFree, std::memory_order_release);
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  uint64_t freed = 0;
  for (auto& slot_v : e->index_blocks) {
    const uint32_t v = slot_v.load();
    if (v == 0) continue;
    auto* entries = reinterpret_cast<std::atomic<uint32_t>*>(block(v - 1));
    for (uint64_t i = 0; i < epb; ++i) {
      const uint32_t x = entries[i].load(std::memory_order_relaxed);
      if (x != 0) {
        push_block(x - 1);
        ++freed;
      }
    }
    push_block(v - 1);
    ++freed;
    slot_v.store(0);
  }
  for (auto& slot_v : e->token_blocks) {
    const uint32_t v = slot_v.load();
    if (v == 0) continue;
    push_block(v - 1);
    ++freed;
    slot_v.store(0);
  }
  for (auto p = pending_.begin(); p != pending_.end();) {
    if (p->first.slot == slot) {
      push_block(p->second.block);
      ++freed;
      p = pending_.erase(p);
    } else {
      ++p;
    }
  }
  by_id_.erase(std::string(e->id, e->id_len));
  ephemeral_owner_.erase(slot);
  free_slots_.push_back(slot);
  return freed;
}

SessionSummary Pool::summarize(uint32_t slot, bool per_layer) const {
  const dp::SessionEntry* e = entry(slot);
  SessionSummary s;
  s.id.assign(e->id, e->id_len);
  s.geometry = e->geometry();
  s.ref = SessionRef{slot, e->generation, e->epoch.load(std::memory_order_acquire)};
  s.n_tokens = e->n_tokens.load(std::memory_order_acquire);
  s.created_unix_ns = e->created_unix_ns;
  s.last_use_unix_ns = e->last_use_unix_ns.load(std::memory_order_relaxed);
  s.max_pages_per_layer = dp::max_pages_per_layer(hdr_->block_bytes, e->n_layers);
  if (per_layer) s.layers.assign(e->n_layers, LayerUsage{});
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  for (uint32_t k = 0; k < dp::kIndexSlots; ++k) {
    const uint32_t v = e->index_blocks[k].load(std::memory_order_acquire);
    if (v == 0 || v - 1 >= hdr_->block_count) continue;
    ++s.metadata_blocks;
    const auto* entries = reinterpret_cast<const std::atomic<uint32_t>*>(block(v - 1));
    for (uint64_t i = 0; i < epb; ++i) {
      if (entries[i].load(std::memory_order_relaxed) == 0) continue;
      ++s.committed_pages;
      if (per_layer) {
        const uint64_t g = uint64_t(k) * epb + i;
        LayerUsage& u = s.layers[g % e->n_layers];
        ++u.pages;
        u.highest_page = std::max<int64_t>(u.highest_page, int64_t(g / e->n_layers));
      }
    }
  }
  for (const auto& v : e->token_blocks) {
    if (v.load(std::memory_order_relaxed) != 0) ++s.metadata_blocks;
  }
  return s;
}

std::vector<SessionSummary> Pool::list_sessions() const {
  std::shared_lock lock(mu_);
  std::vector<SessionSummary> out;
  out.reserve(by_id_.size());
  for (const auto& [id, slot] : by_id_) out.push_back(summarize(slot, false));
  std::sort(out.begin(), out.end(), [](const SessionSummary& a, const SessionSummary& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<SessionSummary> Pool::get_session(const std::string& id) const {
  FREEKV_RETURN_IF_ERROR(check_session_id(id));
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("session '", id, "' does not exist"));
  return summarize(it->second, true);
}

absl::StatusOr<std::vector<int32_t>> Pool::token_ids(const std::string& id) const {
  FREEKV_RETURN_IF_ERROR(check_session_id(id));
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("session '", id, "' does not exist"));
  const dp::SessionEntry& e = *entry(it->second);
  const uint64_t tpb = dp::tokens_per_block(hdr_->block_bytes);
  std::vector<int32_t> out(e.n_tokens.load());
  for (uint64_t t = 0; t < out.size(); t += tpb) {
    const auto* src = reinterpret_cast<const int32_t*>(block(e.token_blocks[t / tpb].load() - 1));
    std::memcpy(out.data() + t, src, std::min<uint64_t>(tpb, out.size() - t) * sizeof(int32_t));
  }
  return out;
}

PoolCounters Pool::counters() const {
  std::shared_lock lock(mu_);
  PoolCounters c;
  c.blocks_total = hdr_->block_count;
  c.blocks_free = free_count();
  c.blocks_data = n_data_;
  c.blocks_metadata = n_meta_;
  c.blocks_pending = pending_.size();
  c.sessions = uint32_t(by_id_.size());
  c.max_sessions = hdr_->max_sessions;
  c.starts = hdr_->starts.load();
  return c;
}

absl::StatusOr<std::vector<uint32_t>> Pool::allocate(uint32_t owner, SessionRef ref, int32_t layer, int64_t first,
                                                     uint32_t n) {
  std::unique_lock lock(mu_);
  FREEKV_ASSIGN_OR_RETURN(dp::SessionEntry * e, resolve_writer(ref));
  FREEKV_RETURN_IF_ERROR(check_page_range(*e, layer, first, n));
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  std::vector<uint32_t> index_needed;
  uint64_t data_needed = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t g = uint64_t(first + i) * e->n_layers + uint32_t(layer);
    const uint32_t k = uint32_t(g / epb);
    if (e->index_blocks[k].load() == 0 &&
        std::find(index_needed.begin(), index_needed.end(), k) == index_needed.end()) {
      index_needed.push_back(k);
    }
    if (!pending_.count(PendingKey{owner, ref.slot, layer, first + i})) ++data_needed;
  }
  const uint64_t need = index_needed.size() + data_needed;
  if (need > free_count()) return pool_full(need);
  for (uint32_t k : index_needed) {
    const uint32_t b = pop_block(kMeta);
    std::memset(block(b), 0, hdr_->block_bytes);
    e->index_blocks[k].store(b + 1, std::memory_order_release);
  }
  std::vector<uint32_t> blocks(n);
  for (uint32_t i = 0; i < n; ++i) {
    const PendingKey key{owner, ref.slot, layer, first + i};
    auto it = pending_.find(key);
    if (it != pending_.end()) {
      blocks[i] = it->second.block;
    } else {
      blocks[i] = pop_block(kPending);
      pending_[key] = PendingValue{blocks[i], ref.generation};
    }
  }
  touch(*e);
  return blocks;
}

absl::Status Pool::commit(uint32_t owner, SessionRef ref, int32_t layer, int64_t first, uint32_t n) {
  std::unique_lock lock(mu_);
  FREEKV_ASSIGN_OR_RETURN(dp::SessionEntry * e, resolve_writer(ref));
  FREEKV_RETURN_IF_ERROR(check_page_range(*e, layer, first, n));
  for (uint32_t i = 0; i < n; ++i) {
    auto it = pending_.find(PendingKey{owner, ref.slot, layer, first + i});
    if (it == pending_.end() || it->second.generation != ref.generation) {
      return absl::FailedPreconditionError(absl::StrCat("page ", first + i, " of layer ", layer,
                                                        " was not allocated by this worker (get it with page_for_write "
                                                        "before committing it)"));
    }
  }
  for (uint32_t i = 0; i < n; ++i) {
    auto it = pending_.find(PendingKey{owner, ref.slot, layer, first + i});
    const uint32_t b = it->second.block;
    pending_.erase(it);
    std::atomic<uint32_t>* slot = index_entry(*e, uint64_t(first + i) * e->n_layers + uint32_t(layer));
    CHECK(slot != nullptr) << "index block missing for an allocated page";
    const uint32_t old = slot->load(std::memory_order_relaxed);
    state_[b] = kData;
    ++n_data_;
    slot->store(b + 1, std::memory_order_release);
    if (old != 0) push_block(old - 1);
  }
  touch(*e);
  return absl::OkStatus();
}

absl::Status Pool::discard(uint32_t owner, SessionRef ref, int32_t layer, int64_t first, uint32_t n) {
  std::unique_lock lock(mu_);
  FREEKV_ASSIGN_OR_RETURN(dp::SessionEntry * e, resolve_writer(ref));
  FREEKV_RETURN_IF_ERROR(check_page_range(*e, layer, first, n));
  for (uint32_t i = 0; i < n; ++i) {
    auto it = pending_.find(PendingKey{owner, ref.slot, layer, first + i});
    if (it == pending_.end()) continue;
    push_block(it->second.block);
    pending_.erase(it);
  }
  return absl::OkStatus();
}

uint64_t Pool::release_owner(uint32_t owner) {
  std::unique_lock lock(mu_);
  uint64_t n = 0;
  std::vector<uint32_t> owned;
  for (const auto& [slot, o] : ephemeral_owner_)
    if (o == owner) owned.push_back(slot);
  for (uint32_t slot : owned) {
    LOG(INFO) << "session '" << std::string(entry(slot)->id, entry(slot)->id_len)
              << "' belonged to a worker that detached; closing it";
    n += close_slot(slot);
  }
  for (auto p = pending_.begin(); p != pending_.end();) {
    if (p->first.owner == owner) {
      push_block(p->second.block);
      p = pending_.erase(p);
      ++n;
    } else {
      ++p;
    }
  }
  return n;
}

absl::Status Pool::append_tokens(SessionRef ref, const int32_t* ids, uint64_t n) {
  if (n == 0) return absl::OkStatus();
  for (uint64_t i = 0; i < n; ++i) {
    if (ids[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i, " is negative"));
    }
  }
  std::unique_lock lock(mu_);
  FREEKV_ASSIGN_OR_RETURN(dp::SessionEntry * e, resolve_writer(ref));
  const uint64_t tpb = dp::tokens_per_block(hdr_->block_bytes);
  const uint64_t cur = e->n_tokens.load();
  if (cur + n > dp::max_tokens(hdr_->block_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat("session would hold ", cur + n, " token ids; with ",
                                                     format_size(hdr_->block_bytes), " blocks a session holds at most ",
                                                     dp::max_tokens(hdr_->block_bytes)));
  }
  const uint64_t k0 = cur / tpb, k1 = (cur + n - 1) / tpb;
  uint64_t need = 0;
  for (uint64_t k = k0; k <= k1; ++k) need += e->token_blocks[k].load() == 0;
  if (need > free_count()) return pool_full(need);
  for (uint64_t k = k0; k <= k1; ++k) {
    if (e->token_blocks[k].load() == 0) e->token_blocks[k].store(pop_block(kMeta) + 1, std::memory_order_release);
  }
  uint64_t t = cur, i = 0;
  while (i < n) {
    const uint64_t k = t / tpb, off = t % tpb;
    const uint64_t run = std::min(n - i, tpb - off);
    auto* dst = reinterpret_cast<int32_t*>(block(e->token_blocks[k].load() - 1)) + off;
    std::memcpy(dst, ids + i, run * sizeof(int32_t));
    i += run;
    t += run;
  }
  e->n_tokens.store(cur + n, std::memory_order_release);
  touch(*e);
  return absl::OkStatus();
}

absl::Status Pool::truncate(SessionRef ref, uint64_t keep_tokens) {
  std::unique_lock lock(mu_);
  FREEKV_ASSIGN_OR_RETURN(dp::SessionEntry * e, resolve_writer(ref));
  const uint64_t cur = e->n_tokens.load();
  if (keep_tokens > cur) {
    return absl::InvalidArgumentError(absl::StrCat("cannot truncate to ", keep_tokens, " token ids: the session holds ", cur));
  }
  // Unpublish the ids first: from here a crash leaves at most pages past the ids, which a resume ignores.
  e->n_tokens.store(keep_tokens, std::memory_order_release);
  const uint64_t keep_pages = keep_tokens / e->page_tokens;  // pages every one of whose tokens is kept
  const uint64_t epb = dp::entries_per_index_block(hdr_->block_bytes);
  for (uint32_t k = 0; k < dp::kIndexSlots; ++k) {
    const uint32_t v = e->index_blocks[k].load();
    if (v == 0) continue;
    auto* entries = reinterpret_cast<std::atomic<uint32_t>*>(block(v - 1));
    for (uint64_t i = 0; i < epb; ++i) {
      const uint64_t page = (uint64_t(k) * epb + i) / e->n_layers;
      if (page < keep_pages) continue;
      const uint32_t x = entries[i].load(std::memory_order_relaxed);
      if (x == 0) continue;
      entries[i].store(0, std::memory_order_release);
      push_block(x - 1);
    }
  }
  const uint64_t tpb = dp::tokens_per_block(hdr_->block_bytes);
  for (uint64_t k = (keep_tokens + tpb - 1) / tpb; k < dp::kTokenSlots; ++k) {
    const uint32_t v = e->token_blocks[k].load();
    if (v == 0) continue;
    e->token_blocks[k].store(0, std::memory_order_release);
    push_block(v - 1);
  }
  for (auto p = pending_.begin(); p != pending_.end();) {
    if (p->first.slot == ref.slot && uint64_t(p->first.page) >= keep_pages) {
      push_block(p->second.block);
      p = pending_.erase(p);
    } else {
      ++p;
    }
  }
  touch(*e);
  return absl::OkStatus();
}

}  // namespace freekv::kvstore
