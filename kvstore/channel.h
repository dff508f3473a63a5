// One worker's data-plane channel: a shared-memory segment with the request and completion rings, the
// recall item arrays, a token arena and the staging pairs (layout and protocol: common/dataplane.h),
// served by one thread of the kvstore.
//
// The channel thread drains requests (alloc, commit, discard, append tokens, truncate, recall, release) and, in
// between, gathers recalls: each recall owns one staging pair, and the thread fills one buffer of one
// ready recall per turn (round-robin over pairs), so several in-flight recalls (one per layer) progress
// together and a recall whose next buffer the worker still holds waits without blocking the others.
// With gather_threads > 1 the copies of one buffer are split over that many threads.
//
// Everything read from the segment is untrusted: ring indices are checked (a corrupt ring stops the
// channel: state kChannelBroken, nothing else affected), requests are validated and answered with an
// error completion, recall items are copied out before they are checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/dataplane.h"
#include "common/shm.h"
#include "common/thread_pool.h"
#include "kvstore/cuda_push.h"
#include "kvstore/pool.h"
#include "kvstore/recall_stats.h"

namespace freekv::kvstore {

struct ChannelConfig {
  uint32_t staging_pairs = 4;
  uint64_t staging_buffer_bytes = 1 << 20;
  uint32_t max_recall_items = 4096;
  uint32_t request_capacity = 256;
  uint32_t completion_capacity = 256;
  uint64_t token_arena_bytes = 256 << 10;
  int gather_threads = 1;
};

class Channel {
 public:
  // Creates /dev/shm/<shm_name> and starts the channel thread. `cuda` (nullable) enables the CUDA push.
  static absl::StatusOr<std::unique_ptr<Channel>> create(Pool* pool, RecallStats* stats, uint32_t id,
                                                         const std::string& worker_name, const std::string& shm_name,
                                                         const ChannelConfig& config, const CudaPushSpec* cuda);
  // Stops the thread, returns the worker's uncommitted blocks, marks the segment closed and removes it.
  ~Channel();

  uint32_t id() const { return id_; }
  const std::string& shm_name() const { return shm_->name(); }
  uint64_t bytes() const { return shm_->size(); }
  const ChannelConfig& config() const { return config_; }
  bool cuda_push() const { return pusher_ != nullptr; }
  bool broken() const { return broken_.load(); }

  // Bytes of a channel segment with this configuration.
  static uint64_t segment_bytes(const ChannelConfig& c);

 private:
  // A recall being gathered into its staging pair.
  struct GatherJob {
    uint64_t seq = 0;
    SessionRef ref;
    uint32_t layer = 0;
    bool single_buffer = false;
    std::vector<dp::RecallItem> items;
    uint32_t next_item = 0;
    uint32_t next_buffer = 0;
    uint64_t chunk_bytes = 0;      // bytes of one item
    uint64_t source_offset = 0;    // where items start in a block (0 for chunks, the page's size for key stats)
    uint32_t chunks_per_buffer = 0;
    bool queued = false;
    uint32_t wanted_buffer() const { return single_buffer ? 0 : next_buffer; }
  };
  struct PairState {
    std::unique_ptr<GatherJob> job;
    bool held[2] = {false, false};  // handed to the worker, not released yet
  };

  Channel() = default;
  void run();
  void handle(const dp::Request& r);
  void accept_recall(const dp::Request& r);
  void release(const dp::Request& r);
  void step(uint32_t pair);
  void maybe_queue(uint32_t pair);
  bool post(const dp::Completion& c);
  void post_done(uint64_t seq);
  void post_error(uint64_t seq, const absl::Status& s);
  void protocol_error(const std::string& why);
  uint8_t* staging(uint32_t pair, uint32_t buffer) const;
  dp::RecallItem* items(uint32_t pair) const;

  Pool* pool_ = nullptr;
  RecallStats* stats_ = nullptr;
  uint32_t id_ = 0;
  std::string worker_name_;
  ChannelConfig config_;
  std::unique_ptr<SharedMemory> shm_;
  dp::ChannelHeader* hdr_ = nullptr;
  dp::RequestRing requests_;
  dp::CompletionRing completions_;
  std::unique_ptr<StagingPusher> pusher_;
  std::unique_ptr<ThreadPool> gather_pool_;
  std::vector<PairState> pairs_;
  std::deque<uint32_t> ready_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> broken_{false};
  uint64_t bad_releases_ = 0;
  std::thread thread_;
};

}  // namespace freekv::kvstore
