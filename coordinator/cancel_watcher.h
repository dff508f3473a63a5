// Cancels forwarded calls when the client's call ends. A sync-API handler blocked in a client stream's
// Read() cannot see its own call being cancelled (the client went away, or its deadline passed), and
// gRPC does not carry that cancellation to a child call on its own here; one thread polls the parents
// of all forwarded calls and cancels the children of those that are done.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace freekv {

class CancelWatcher {
 public:
  CancelWatcher();
  ~CancelWatcher();

  // While the returned guard lives, `child` is cancelled soon (within ~10 ms) after `parent` is.
  class Guard {
   public:
    Guard(CancelWatcher* w, uint64_t id) : w_(w), id_(id) {}
    ~Guard() { w_->remove(id_); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    CancelWatcher* w_;
    uint64_t id_;
  };
  Guard watch(grpc::ServerContext* parent, grpc::ClientContext* child);

 private:
  void remove(uint64_t id);
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::pair<grpc::ServerContext*, grpc::ClientContext*>> calls_;
  uint64_t next_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace freekv
