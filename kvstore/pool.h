// The host KV pool: one POSIX shared-memory segment holding fixed-size blocks, the session table, the
// per-session page tables and token ids (layout and publication rules: common/dataplane.h).
//
// Opening a pool creates the segment (O_EXCL, 0600) or reattaches to an existing one. Reattaching
// validates the header (magic, ABI version, byte order, geometry) against the options and refuses any
// difference with a message naming it; it never reinterprets a segment. It then rebuilds the free
// stack from the sessions' tables (a block is in use iff a live session references it), so a crash at
// any point — of a worker or of the kvstore — leaks no block and loses no committed page. An
// inconsistent table entry (out of range, referenced twice) is dropped with an error in the log.
//
// Blocks handed to a worker for writing are "pending": recorded in this process only, owned by the
// worker's channel (`owner`), and published into the page table by commit(). release_owner() (the
// worker went away) and close_session() return pending blocks.
//
// Thread-safe. Mutations take an exclusive lock; recall gathers hold a shared lock (ReadLock) while
// they copy, so a block is never freed or reused under a reader.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/dataplane.h"
#include "common/shm.h"
#include "common/status.h"

namespace freekv::kvstore {

struct PoolOptions {
  std::string name = "freekv-pool";          // /dev/shm/<name>
  uint64_t pool_bytes = 4ull << 30;          // segment size
  uint64_t block_bytes = 128 << 10;          // multiple of 4 KiB, ≥ 4 KiB
  uint32_t max_sessions = 1024;
  bool mlock = true;                         // lock in memory; a warning when not allowed
};

using SessionRef = dp::SessionRef;

struct LayerUsage {
  uint64_t pages = 0;
  int64_t highest_page = -1;
};

struct SessionSummary {
  std::string id;
  dp::SessionGeometry geometry;
  SessionRef ref;
  uint64_t n_tokens = 0;
  uint64_t committed_pages = 0;
  uint64_t metadata_blocks = 0;
  uint64_t created_unix_ns = 0;
  uint64_t last_use_unix_ns = 0;
  uint64_t max_pages_per_layer = 0;
  std::vector<LayerUsage> layers;  // filled by get_session only
};

struct PoolCounters {
  uint64_t blocks_total = 0, blocks_free = 0, blocks_data = 0, blocks_metadata = 0, blocks_pending = 0;
  uint32_t sessions = 0, max_sessions = 0;
  uint64_t starts = 0;
};

class Pool {
 public:
  // Creates or reattaches (see above). FAILED_PRECONDITION when the segment is incompatible or locked by
  // another kvstore; INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<Pool>> open(const PoolOptions& options);
  ~Pool();

  // Validates geometry and id the way open_session does.
  static absl::Status check_geometry(const dp::SessionGeometry& g, uint64_t block_bytes);
  static absl::Status check_session_id(const std::string& id);

  const std::string& name() const { return shm_->name(); }
  uint8_t* base() const { return shm_->data(); }
  uint64_t segment_bytes() const { return shm_->size(); }
  uint64_t block_bytes() const { return hdr_->block_bytes; }
  uint64_t block_count() const { return hdr_->block_count; }
  uint64_t blocks_offset() const { return hdr_->blocks_offset; }
  bool created() const { return created_; }
  bool mlocked() const { return mlocked_; }
  uint8_t* block(uint32_t b) const { return base() + hdr_->blocks_offset + uint64_t(b) * hdr_->block_bytes; }

  // ---- sessions (control API) ----
  struct Opened {
    SessionSummary session;
    bool created = false;
  };
  // A session created with a non-zero ephemeral_owner belongs to that worker attachment: release_owner()
  // closes it, and so does the next start of a kvstore on this pool (no attachment survives one).
  // Opening an existing session makes the caller its writer (a new epoch); with must_create it is
  // ALREADY_EXISTS instead, and the session is left as it is.
  absl::StatusOr<Opened> open_session(const std::string& id, const dp::SessionGeometry& g, bool create_if_missing,
                                      uint32_t ephemeral_owner = 0, bool must_create = false);
  // Frees every block of the session, pending ones included. Returns how many. writer_epoch non-zero:
  // only if that is still the session's epoch (FAILED_PRECONDITION otherwise: a fenced worker cannot
  // close what another now writes); 0: whoever asks (the coordinator, an operator).
  absl::StatusOr<uint64_t> close_session(const std::string& id, uint64_t writer_epoch = 0);
  std::vector<SessionSummary> list_sessions() const;
  absl::StatusOr<SessionSummary> get_session(const std::string& id) const;
  // Every token id the session stores, in order (what a client of the session was answered, for
  // operators and the chaos run's checks).
  absl::StatusOr<std::vector<int32_t>> token_ids(const std::string& id) const;
  PoolCounters counters() const;

  // ---- data path ----
  // Every write below is refused with FAILED_PRECONDITION when `ref` is not the session's writer (its
  // epoch is older than the session's latest open).
  // Blocks for pages [first, first + n) of `layer`, n ≤ dp::kMaxAllocPages; all or nothing. A page this
  // owner already holds pending gets the same block again. Creates the index blocks the pages need, so
  // commit() never allocates. RESOURCE_EXHAUSTED when the pool is full.
  absl::StatusOr<std::vector<uint32_t>> allocate(uint32_t owner, SessionRef ref, int32_t layer, int64_t first, uint32_t n);
  // Publishes pending pages [first, first + n); a page committed before is replaced (its old block freed).
  absl::Status commit(uint32_t owner, SessionRef ref, int32_t layer, int64_t first, uint32_t n);
  // Gives back pending pages [first, first + n) (pages not pending are ignored).
  absl::Status discard(uint32_t owner, SessionRef ref, int32_t layer, int64_t first, uint32_t n);
  // Appends token ids (all or nothing).
  absl::Status append_tokens(SessionRef ref, const int32_t* ids, uint64_t n);
  // Keeps the first keep_tokens token ids (≤ the ids held) and the pages they fill completely, in every
  // layer; frees later ids and pages, and pending blocks of those pages (a failed turn is undone so).
  absl::Status truncate(SessionRef ref, uint64_t keep_tokens);
  // Frees every pending block of `owner` and closes its ephemeral sessions. Returns the blocks freed.
  uint64_t release_owner(uint32_t owner);

  // ---- recall (readers) ----
  class ReadLock {
   public:
    explicit ReadLock(const Pool* p) : lock_(p->mu_) {}
   private:
    std::shared_lock<std::shared_mutex> lock_;
  };
  // With a ReadLock held: the session entry of a live ref, or NOT_FOUND.
  absl::StatusOr<const dp::SessionEntry*> resolve_locked(SessionRef ref) const;
  // With a ReadLock held: the committed block of (layer, page) of a resolved session, or -1.
  int64_t committed_block_locked(const dp::SessionEntry& e, uint32_t layer, uint64_t page) const;
  void touch(const dp::SessionEntry& e) const;

 private:
  enum BlockState : uint8_t { kFree = 0, kPending = 1, kData = 2, kMeta = 3 };
  struct PendingKey {
    uint32_t owner, slot;
    int32_t layer;
    int64_t page;
    bool operator==(const PendingKey&) const = default;
  };
  struct PendingKeyHash {
    size_t operator()(const PendingKey& k) const {
      uint64_t h = (uint64_t(k.owner) << 32) ^ k.slot;
      h = h * 0x9E3779B97F4A7C15ull ^ uint64_t(uint32_t(k.layer));
      h = h * 0x9E3779B97F4A7C15ull ^ uint64_t(k.page);
      return size_t(h * 0x9E3779B97F4A7C15ull);
    }
  };
  struct PendingValue {
    uint32_t block;
    uint64_t generation;
  };

  Pool() = default;
  absl::Status init_fresh(const PoolOptions& o);
  absl::Status validate_existing(const PoolOptions& o);
  void rebuild();

  dp::SessionEntry* entry(uint32_t slot) const;
  uint32_t* free_stack() const;
  // The entry of a live ref whose epoch is the session's current one (its writer); FAILED_PRECONDITION
  // naming both epochs when another open came since, NOT_FOUND when closed.
  absl::StatusOr<dp::SessionEntry*> resolve_writer(SessionRef ref) const;
  SessionSummary summarize(uint32_t slot, bool per_layer) const;
  std::atomic<uint32_t>* index_entry(const dp::SessionEntry& e, uint64_t entry_index) const;
  absl::Status check_page_range(const dp::SessionEntry& e, int32_t layer, int64_t first, uint32_t n) const;

  // Allocator (exclusive lock held).
  uint64_t free_count() const { return hdr_->free_top.load(std::memory_order_relaxed); }
  uint32_t pop_block(BlockState as);
  void push_block(uint32_t b);
  absl::Status pool_full(uint64_t need) const;

  std::unique_ptr<SharedMemory> shm_;
  dp::PoolHeader* hdr_ = nullptr;
  bool created_ = false;
  bool mlocked_ = false;

  mutable std::shared_mutex mu_;
  std::vector<uint8_t> state_;  // BlockState per block (derived at start)
  std::unordered_map<std::string, uint32_t> by_id_;
  std::vector<uint32_t> free_slots_;
  std::unordered_map<PendingKey, PendingValue, PendingKeyHash> pending_;
  std::unordered_map<uint32_t, uint32_t> ephemeral_owner_;  // session slot -> the attachment it belongs to
  // Frees everything of the session in `slot` (exclusive lock held). Returns the blocks freed.
  uint64_t close_slot(uint32_t slot);
  uint64_t n_data_ = 0, n_meta_ = 0;
};

}  // namespace freekv::kvstore
