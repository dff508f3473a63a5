#include "coordinator/cancel_watcher.h"

namespace freekv {

CancelWatcher::CancelWatcher() : thread_([this] { loop(); }) {}

CancelWatcher::~CancelWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

CancelWatcher::Guard CancelWatcher::watch(grpc::ServerContext* parent, grpc::ClientContext* child) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_++;
  calls_[id] = {parent, child};
  return Guard(this, id);
}

void CancelWatcher::remove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.erase(id);
}

void CancelWatcher::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // Entries are removed under the lock before their contexts die, so both pointers are valid here.
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second.first->IsCancelled()) {
        it->second.second->TryCancel();
        it = calls_.erase(it);
      } else {
        ++it;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(10), [&] { return stop_; });
  }
}

}  // namespace freekv
