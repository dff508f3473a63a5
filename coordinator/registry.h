// The coordinator's view of its workers: who registered, where they listen, which kvstore they share,
// how loaded they are, and whether they are alive.
//
// A worker is alive while it heartbeats: one silent for `dead_after` is marked dead (and so is one
// that stops answering a call, see mark_dead()). Dead workers stay listed, so the admin API shows what
// happened, until a worker registers again at the same address. Draining workers get no new work.
//
// Routing (pick()): among alive, non-draining workers — attached to a given kvstore when the request's
// session lives there — the least loaded: fewest requests in flight through this coordinator per
// batch seat, then fewest queued as the worker last reported, then fewest sessions.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "freekv/v1/admin.pb.h"
#include "freekv/v1/worker.grpc.pb.h"

namespace freekv {

struct WorkerEntry {
  std::string id;
  v1::RegisterWorkerRequest info;
  std::shared_ptr<v1::Worker::Stub> stub;
  std::chrono::steady_clock::time_point last_heartbeat;
  int64_t registered_unix_ms = 0;
  v1::WorkerLoad load;          // as last reported
  bool dead = false;
  bool draining = false;
  std::string dead_reason;
  std::atomic<int> in_flight{0};  // Generate calls this coordinator has open on it
  std::atomic<int64_t> sessions{0};  // sessions with affinity to it
};

class Registry {
 public:
  explicit Registry(std::chrono::milliseconds heartbeat_interval) : interval_(heartbeat_interval) {}

  std::chrono::milliseconds heartbeat_interval() const { return interval_; }

  // Registers a worker and returns its id. A dead or live entry at the same address is replaced (the
  // process restarted).
  std::string add(const v1::RegisterWorkerRequest& info);
  // Records a heartbeat; false when the id is unknown or was marked dead (the worker must register again).
  bool heartbeat(const v1::HeartbeatRequest& req, bool* draining);

  std::shared_ptr<WorkerEntry> get(const std::string& id);
  // Least loaded alive, non-draining worker; kvstore_id non-empty restricts to workers attached to it,
  // need_kvstore to workers with any kvstore.
  std::shared_ptr<WorkerEntry> pick(const std::string& kvstore_id, bool need_kvstore);
  bool usable(const WorkerEntry& w);
  void mark_dead(const std::string& id, const std::string& why);
  absl::Status drain(const std::string& id);
  // Alive workers, one per kvstore (the first registered), for calls that ask a kvstore.
  std::vector<std::shared_ptr<WorkerEntry>> one_per_kvstore();
  std::vector<std::shared_ptr<WorkerEntry>> alive();
  std::vector<std::shared_ptr<WorkerEntry>> all();

  v1::WorkerStatus status(const WorkerEntry& w);

 private:
  void expire_locked();  // marks workers silent for too long dead

  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<WorkerEntry>> workers_;  // by id
  int64_t next_id_ = 1;
};

}  // namespace freekv
