// The worker's side of freekv-kvstore: session control over gRPC and the shared-memory data plane
// (common/dataplane.h) for offload, token ids and recall.
//
// connect() attaches this process as one worker: the kvstore creates a data-plane channel for it and
// the client maps the pool (metadata read-only, blocks read-write) and the channel. The attachment
// lives as long as the client: when the process exits or crashes, the kvstore returns the blocks it had
// allocated but not committed; its sessions and committed pages stay.
//
// Offload: page_for_write() gives a pointer into the pool block of (session, layer, page), laid out
// [n_kv_heads][K|V][page_tokens][head_dim] in the session dtype; write the whole page there (memcpy on
// CPU, a D2H copy on CUDA), then commit_page(). A page is durable — it survives worker and kvstore
// crashes and restarts — from the moment commit_page() returns. Committing a page again replaces it.
//
// Recall: post_recall() asks for the chunks of (kv_head, logical page) items of one layer and returns a
// ticket; wait_recall(ticket, consume) calls consume(item_index, chunk) once per item, in item order,
// where chunk points at [2 (K, V)][page_tokens][head_dim] (chunk_bytes() bytes) in a staging buffer that
// is valid only during the call. The kvstore gathers into one buffer of the recall's staging pair while
// consume() runs over the other (double buffering). Each recall in flight owns one staging pair, so up
// to staging_pairs() recalls may be posted before waiting, and waited in any order; posting more is
// FAILED_PRECONDITION (worker/kv/recall_queue.h shares the pairs among everything a worker recalls).
// Every posted recall must be waited for: its pair stays taken until then (or, when the wait timed out,
// until the kvstore is done with it). Every request carries a sequence number that its completion
// echoes, so a wait is never satisfied by another request's completion.
//
// The attachment does not survive a kvstore restart: once the kvstore is gone every call returns
// UNAVAILABLE; connect a new client (sessions and committed pages are still there).
//
// Threading: thread-compatible. One client is used by one thread at a time (the worker's step loop);
// give each thread of control its own client. Errors follow DESIGN §5: NOT_FOUND (unknown or closed
// session), INVALID_ARGUMENT (bad geometry, out-of-range layer/page/head, uncommitted page in a recall),
// RESOURCE_EXHAUSTED (pool full: only this request fails), UNAVAILABLE (kvstore gone),
// DEADLINE_EXCEEDED (no answer within Options::timeout).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <deque>
#include <vector>

#include "common/dataplane.h"
#include "common/shm.h"
#include "common/status.h"
#include "worker/kv/device_staging.h"

namespace freekv::v1 {
class OpenSessionRequest;
}

namespace freekv {

using KvSessionGeometry = dp::SessionGeometry;  // layers, kv heads, head dim, page tokens, dtype

using SessionRef = dp::SessionRef;  // from open_session; stale once the session is closed
using RecallItem = dp::RecallItem;  // (kv_head, logical page of the recall's layer)

struct KvSessionInfo {
  std::string id;
  KvSessionGeometry geometry;
  SessionRef ref;
  bool created = false;       // open_session created it
  uint64_t n_tokens = 0;      // token ids stored
  uint64_t committed_pages = 0;
  uint64_t max_pages_per_layer = 0;
};

struct KvLayerStats {
  uint64_t pages = 0;         // committed pages of the layer
  uint64_t bytes = 0;
  int64_t highest_page = -1;  // highest committed logical page
};

struct KvSessionStats {
  uint64_t n_tokens = 0;
  uint64_t committed_pages = 0;
  uint64_t bytes = 0;
  int64_t last_use_unix_ms = 0;
  std::vector<KvLayerStats> layers;
};

struct KvPoolStats {
  uint64_t blocks_total = 0, blocks_used = 0, blocks_free = 0, blocks_data = 0, blocks_metadata = 0,
           blocks_pending = 0;
  uint64_t block_bytes = 0;
  uint32_t sessions = 0, workers = 0;
  uint64_t bytes_recalled_total = 0, recalls_total = 0, recall_errors_total = 0;
  double recall_gbps_last_minute = 0;
  uint64_t pool_starts = 0;
};

enum class RecallMode {
  kDoubleBuffered,  // gather into one buffer while the other is consumed (the normal path)
  kSingleBuffered,  // one buffer, no overlap (a baseline for the benchmark)
};

enum class RecallSource {
  kKv,        // an item is the chunk [2][page_tokens][head_dim] of (kv_head, page)
  kKeyStats,  // an item is that head's key statistics [3][head_dim] fp32, stored after the page
};

class KvstoreClient {
 public:
  struct Options {
    std::string worker_name;               // shows in the kvstore's logs
    uint32_t staging_pairs = 0;            // recalls in flight at once; 0 = the kvstore's default (4)
    uint64_t staging_buffer_bytes = 0;     // each of a pair's two buffers; 0 = default (1 MiB)
    uint32_t max_recall_items = 0;         // items per recall; 0 = default (4096)
    int64_t timeout_ms = 30000;            // longest wait for one completion
    // ≥ 0: recalls land in device memory of this GPU (CUDA builds; the kvstore's pool must be registered
    // with CUDA, and staging_pairs and staging_buffer_bytes must be given, since the device staging is
    // allocated before attaching). -1: recalls land in the channel's shared memory.
    int cuda_device = -1;
  };

  // Connects to the kvstore on `unix_socket_path` (a path; "unix:" prefix optional) and attaches.
  static absl::StatusOr<std::unique_ptr<KvstoreClient>> connect(const std::string& unix_socket_path,
                                                                const Options& options);
  static absl::StatusOr<std::unique_ptr<KvstoreClient>> connect(const std::string& unix_socket_path) {
    return connect(unix_socket_path, Options());
  }
  ~KvstoreClient();  // detaches (uncommitted pages are returned to the pool)
  KvstoreClient(const KvstoreClient&) = delete;
  KvstoreClient& operator=(const KvstoreClient&) = delete;

  // ---- sessions (gRPC) ----
  // Creates (create_if_missing) or attaches to a session. Each open makes the caller the session's
  // writer (a new epoch in the returned ref): offload, token ids and truncation under a ref from an
  // earlier open are FAILED_PRECONDITION, so two workers can never write one session at once. Attaching with another geometry is
  // INVALID_ARGUMENT; a missing session without create_if_missing is NOT_FOUND. An ephemeral new session
  // belongs to this client's attachment: the kvstore closes it when the attachment ends, however this
  // process ends, or when the kvstore restarts.
  absl::StatusOr<KvSessionInfo> open_session(const std::string& session_id, const KvSessionGeometry& g,
                                             bool create_if_missing, bool ephemeral = false);
  // Creates a session that must not exist yet: ALREADY_EXISTS otherwise, and the existing one keeps its
  // writer (a create never takes a session from the worker writing it).
  absl::StatusOr<KvSessionInfo> create_session(const std::string& session_id, const KvSessionGeometry& g,
                                               bool ephemeral = false);
  // Frees every page and token id of the session. writer_epoch (a SessionRef's epoch) non-zero: only
  // while that open is still the session's writer (FAILED_PRECONDITION after another open); 0: always.
  absl::Status close_session(const std::string& session_id, uint64_t writer_epoch = 0);
  absl::StatusOr<KvSessionStats> session_stats(const std::string& session_id);
  absl::StatusOr<KvPoolStats> pool_stats();

  // ---- offload (data plane) ----
  // Writable pool block of (session, layer, page): page_bytes() = n_kv_heads·2·page_tokens·head_dim·dtype.
  // Asking again for a page not yet committed returns the same block.
  absl::StatusOr<uint8_t*> page_for_write(SessionRef s, int layer, int64_t page);
  // Same for pages [first_page, first_page + n) of one layer, in one round trip (n ≤ 16).
  absl::StatusOr<std::vector<uint8_t*>> pages_for_write(SessionRef s, int layer, int64_t first_page, int n);
  // Publishes written pages; durable once this returns.
  absl::Status commit_page(SessionRef s, int layer, int64_t page) { return commit_pages(s, layer, page, 1); }
  absl::Status commit_pages(SessionRef s, int layer, int64_t first_page, int n);
  // Gives back pages obtained with page_for_write and not committed.
  absl::Status discard_pages(SessionRef s, int layer, int64_t first_page, int n);
  // Keeps the first keep_tokens token ids (≤ those stored) and the pages they fill completely; frees
  // the rest (undoes a failed turn).
  absl::Status truncate(SessionRef s, uint64_t keep_tokens);

  // ---- token ids ----
  // Appends ids (≥ 0) to the session's stored token ids (all or nothing per call).
  absl::Status append_tokens(SessionRef s, const int32_t* ids, int64_t n);
  // Every stored token id of the session, read from the pool (for a worker taking over a session).
  absl::StatusOr<std::vector<int32_t>> tokens(SessionRef s) const;

  // ---- recall (data plane) ----
  // Posts a recall of `items` of `layer`; returns its ticket. Items are validated by the kvstore: an
  // uncommitted page, a page or head out of range, or an unknown session makes wait_recall fail with a
  // message naming the item (nothing is copied then). FAILED_PRECONDITION when every pair is taken.
  absl::StatusOr<uint64_t> post_recall(SessionRef s, int layer, const std::vector<RecallItem>& items,
                                       RecallMode mode = RecallMode::kDoubleBuffered,
                                       RecallSource source = RecallSource::kKv);
  // Waits for the recall and hands every item to consume(item_index, bytes) in item order. With
  // cuda_device ≥ 0, bytes is a device address, complete when consume is called; either way consume
  // must be done reading it when it returns (the buffer is then released for refilling). A wait that
  // times out (DEADLINE_EXCEEDED) gives the recall up: its staging pair returns to use by itself once
  // the kvstore has finished with it.
  absl::Status wait_recall(uint64_t ticket, const std::function<void(int64_t item, const uint8_t* chunk)>& consume);
  // Staging pairs free for post_recall now (reclaiming those of given-up recalls that have ended).
  uint32_t free_pairs();

  // ---- direct reads (CPU) ----
  // The committed block of (session, layer, page) in the mapped pool, or nullptr when the page is not
  // committed (or the session is closed). Valid until the page is replaced or the session closed.
  const uint8_t* committed_page(SessionRef s, int layer, int64_t page) const;

  // True once the kvstore went away (its process ended): every call fails from then on.
  bool gone() const { return kvstore_gone_.load(); }
  uint32_t staging_pairs() const { return n_pairs_; }
  bool recalls_to_device() const { return device_staging_ != nullptr; }
  uint64_t staging_buffer_bytes() const { return buffer_bytes_; }
  uint32_t max_recall_items() const { return max_items_; }
  uint32_t worker_id() const { return worker_id_; }
  uint64_t pool_block_bytes() const;

  class Impl;  // gRPC state (keeps generated headers out of this one)

 private:
  struct Ticket {
    uint32_t pair = 0;
    uint32_t n_items = 0;
    uint32_t next_item = 0;
    uint64_t chunk_bytes = 0;
    std::deque<dp::Completion> stash;  // completions that arrived while waiting for another request
    bool abandoned = false;            // its wait timed out: remaining completions free the pair
  };

  KvstoreClient();
  absl::Status attach(const std::string& path, const Options& options);
  // OpenSession with `request`'s mode (create_if_missing or must_create) already set.
  absl::StatusOr<KvSessionInfo> open(const std::string& session_id, const KvSessionGeometry& g, bool ephemeral,
                                     v1::OpenSessionRequest* request);
  // Sends a request (assigns its seq) and returns the seq.
  absl::StatusOr<uint64_t> send(dp::Request r);
  // The next completion for `seq`; completions of other tickets are routed (route_completion).
  absl::StatusOr<dp::Completion> next_completion(uint64_t seq, Ticket* ticket);
  // Stashes a completion for its waiting ticket, or finishes off a given-up recall with it.
  void route_completion(const dp::Completion& c);
  // Routes every completion already on the ring (without waiting).
  void poll_completions();
  absl::StatusOr<dp::Completion> call(dp::Request r);
  absl::Status channel_state_error() const;
  const dp::SessionEntry* live_entry(SessionRef s) const;
  uint8_t* staging(uint32_t pair, uint32_t buffer) const;

  std::unique_ptr<Impl> impl_;
  std::unique_ptr<DeviceStaging> device_staging_;  // with Options::cuda_device ≥ 0
  std::unique_ptr<SharedMemory> pool_;
  std::unique_ptr<SharedMemory> channel_;
  const dp::PoolHeader* pool_hdr_ = nullptr;
  dp::ChannelHeader* ch_hdr_ = nullptr;
  dp::RequestRing requests_;
  dp::CompletionRing completions_;
  uint32_t n_pairs_ = 0, max_items_ = 0, worker_id_ = 0;
  uint64_t buffer_bytes_ = 0;
  int64_t timeout_ns_ = 0;
  uint64_t next_seq_ = 1;
  std::vector<bool> pair_busy_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  std::atomic<bool> kvstore_gone_{false};
  std::thread watcher_;
};

}  // namespace freekv
