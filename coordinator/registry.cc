#include "coordinator/registry.h"

#include <glog/logging.h>

#include <algorithm>
#include <tuple>

#include "common/grpc_util.h"

namespace freekv {
namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void Registry::expire_locked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& [id, w] : workers_) {
    if (!w->dead && now - w->last_heartbeat > 3 * interval_) {
      w->dead = true;
      w->dead_reason = "no heartbeat for three intervals";
      LOG(WARNING) << "worker " << id << " (" << w->info.address() << ") missed its heartbeats: marked dead";
    }
  }
}

std::string Registry::add(const v1::RegisterWorkerRequest& info) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second->info.address() == info.address()) {
      LOG(INFO) << "worker " << it->first << " at " << info.address() << " is replaced by a new registration";
      it->second->dead = true;
      it->second->dead_reason = "replaced by a worker registering at the same address";
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  auto w = std::make_shared<WorkerEntry>();
  w->id = absl::StrCat("w", next_id_++);
  w->info = info;
  w->stub = v1::Worker::NewStub(make_channel(info.address()));
  w->last_heartbeat = std::chrono::steady_clock::now();
  w->registered_unix_ms = unix_ms();
  workers_[w->id] = w;
  LOG(INFO) << "worker " << w->id << " registered: " << info.address() << ", model " << info.model() << ", policy "
            << info.policy() << ", kvstore " << (info.kvstore_id().empty() ? "none" : info.kvstore_id());
  return w->id;
}

bool Registry::heartbeat(const v1::HeartbeatRequest& req, bool* draining) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(req.worker_id());
  if (it == workers_.end() || it->second->dead) return false;
  WorkerEntry& w = *it->second;
  w.last_heartbeat = std::chrono::steady_clock::now();
  w.load = req.load();
  if (req.stopping() && !w.draining) LOG(INFO) << "worker " << w.id << " is stopping: no new requests go to it";
  w.draining = w.draining || req.stopping();
  if (req.exiting()) {
    w.dead = true;
    w.dead_reason = "it stopped (exited after draining)";
    LOG(INFO) << "worker " << w.id << " exited";
  }
  *draining = w.draining;
  return true;
}

std::shared_ptr<WorkerEntry> Registry::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second;
}

bool Registry::usable(const WorkerEntry& w) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  return !w.dead && !w.draining;
}

std::shared_ptr<WorkerEntry> Registry::pick(const std::string& kvstore_id, bool need_kvstore) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  std::shared_ptr<WorkerEntry> best;
  auto key = [](const WorkerEntry& w) {
    const double per_seat = double(w.in_flight.load()) / double(std::max(1, w.info.max_batch()));
    return std::make_tuple(per_seat, w.load.queued_requests(), w.sessions.load());
  };
  for (auto& [id, w] : workers_) {
    if (w->dead || w->draining) continue;
    if (!kvstore_id.empty() && w->info.kvstore_id() != kvstore_id) continue;
    if (need_kvstore && w->info.kvstore_id().empty()) continue;
    if (best == nullptr || key(*w) < key(*best)) best = w;
  }
  return best;
}

void Registry::mark_dead(const std::string& id, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second->dead) return;
  it->second->dead = true;
  it->second->dead_reason = why;
  LOG(WARNING) << "worker " << id << " (" << it->second->info.address() << ") marked dead: " << why;
}

absl::Status Registry::drain(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown worker '", id, "'; `freekv admin workers` lists them"));
  }
  it->second->draining = true;
  LOG(INFO) << "worker " << id << " drains: no new requests go to it";
  return absl::OkStatus();
}

std::vector<std::shared_ptr<WorkerEntry>> Registry::one_per_kvstore() {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  std::map<std::string, std::shared_ptr<WorkerEntry>> by_kvstore;
  for (auto& [id, w] : workers_) {
    if (w->dead || w->info.kvstore_id().empty()) continue;
    by_kvstore.emplace(w->info.kvstore_id(), w);
  }
  std::vector<std::shared_ptr<WorkerEntry>> out;
  for (auto& [k, w] : by_kvstore) out.push_back(w);
  return out;
}

std::vector<std::shared_ptr<WorkerEntry>> Registry::alive() {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  std::vector<std::shared_ptr<WorkerEntry>> out;
  for (auto& [id, w] : workers_) {
    if (!w->dead) out.push_back(w);
  }
  return out;
}

std::vector<std::shared_ptr<WorkerEntry>> Registry::all() {
  std::lock_guard<std::mutex> lock(mu_);
  expire_locked();
  std::vector<std::shared_ptr<WorkerEntry>> out;
  for (auto& [id, w] : workers_) out.push_back(w);
  return out;
}

v1::WorkerStatus Registry::status(const WorkerEntry& w) {
  std::lock_guard<std::mutex> lock(mu_);
  v1::WorkerStatus s;
  s.set_worker_id(w.id);
  s.set_address(w.info.address());
  s.set_kvstore_id(w.info.kvstore_id());
  s.set_model(w.info.model());
  s.set_policy(w.info.policy());
  s.set_state(w.dead ? "dead" : w.draining ? "draining" : "ready");
  s.set_heartbeat_age_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - w.last_heartbeat).count());
  s.set_active_requests(w.load.active_requests());
  s.set_queued_requests(w.load.queued_requests());
  s.set_max_batch(w.info.max_batch());
  s.set_steps(w.load.steps());
  s.set_generated_tokens(w.load.generated_tokens());
  s.set_sessions(w.sessions.load());
  s.set_registered_unix_ms(w.registered_unix_ms);
  s.set_max_positions(w.info.max_positions());
  return s;
}

}  // namespace freekv
