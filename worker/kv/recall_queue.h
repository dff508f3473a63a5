// The recalls of one worker, over its kvstore client's staging pairs: a bounded pool shared by every
// sequence and layer in flight, whatever the model's depth and the batch (DESIGN §1, data plane).
//
// A background recall (post) keeps one staging pair until it is finished. When a recall needs a pair
// and none is free, the oldest background recall is finished first: its items land in their
// destinations earlier than its owner asked, which is safe because a background recall is posted only
// once nothing will read its destinations before its own finish() (the caller posts it after the
// attention that read their old contents). A recall waited for at once (fetch) is split into parts of
// at most the client's max items.
//
// A recall that fails (kvstore gone, session closed, time-out) reports its status at finish(); its
// destinations may then hold anything and must not be used. A timed-out recall's pair returns to use
// when the kvstore is done with it (KvstoreClient::wait_recall). Engine thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "worker/kv/kvstore_client.h"

namespace freekv {

struct RecallRequest {
  SessionRef session;
  int layer = 0;
  std::vector<RecallItem> items;
  std::vector<uint8_t*> destinations;  // [items]: where each item's bytes go
  RecallSource source = RecallSource::kKv;
  size_t item_bytes = 0;               // a chunk, or one head's key statistics
};

class RecallQueue {
 public:
  explicit RecallQueue(KvstoreClient* client) : client_(client) {}
  RecallQueue(const RecallQueue&) = delete;
  RecallQueue& operator=(const RecallQueue&) = delete;

  KvstoreClient* client() const { return client_; }

  // Posts a background recall (at most the client's max items) and returns its handle.
  absl::StatusOr<uint64_t> post(RecallRequest request);
  // Waits until the recall's items are in their destinations (they may be already); its status.
  // wait_seconds (nullable) gets the time spent blocked here.
  absl::Status finish(uint64_t handle, double* wait_seconds);
  // A recall of any size, waited for before returning.
  absl::Status fetch(const RecallRequest& request, double* wait_seconds);

  size_t in_flight() const { return order_.size(); }

 private:
  struct Flight {
    RecallRequest request;
    uint64_t ticket = 0;   // the client's ticket while in flight
    bool landed = false;   // waited for (early or by finish)
    absl::Status status;
  };

  // Makes sure a staging pair is free, finishing the oldest background recalls as needed.
  absl::Status free_a_pair();
  // Waits for a posted client recall and copies its items into `destinations`.
  absl::Status land(uint64_t ticket, const std::vector<uint8_t*>& destinations, size_t item_bytes);
  void land_flight(Flight& f);

  KvstoreClient* client_;
  uint64_t next_handle_ = 1;
  std::map<uint64_t, Flight> flights_;
  std::deque<uint64_t> order_;  // handles not landed yet, oldest first
};

}  // namespace freekv
