// Registration of a worker with its coordinator, then a heartbeat every interval carrying the load.
// When the coordinator does not know the worker any more (it restarted), the next heartbeat says so
// and the worker registers again; while the coordinator is unreachable it keeps retrying.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "freekv/v1/worker.grpc.pb.h"
#include "grpcpp/security/credentials.h"

namespace freekv {

class Registrar {
 public:
  // on_registered receives the id the coordinator gave; load() is called for every heartbeat.
  // credentials: how to reach the coordinator (null: plaintext; TLS when it serves --tls-cert-file).
  Registrar(std::string coordinator, std::shared_ptr<grpc::ChannelCredentials> credentials, std::string token,
            v1::RegisterWorkerRequest info, std::function<void(const std::string&)> on_registered,
            std::function<v1::WorkerLoad()> load);
  ~Registrar();  // stops the thread

  // SIGTERM: tells the coordinator at once that this worker drains (it routes nothing new here), and
  // says so in every later heartbeat.
  void announce_stopping();
  // The last heartbeat, before the process exits: the coordinator forgets this worker.
  void announce_exit();

  bool registered() const { return registered_.load(); }
  bool draining() const { return draining_.load(); }

 private:
  void loop();
  bool do_register();
  void heartbeat(bool exiting = false);

  std::string coordinator_, token_;
  v1::RegisterWorkerRequest info_;
  std::function<void(const std::string&)> on_registered_;
  std::function<v1::WorkerLoad()> load_;
  std::unique_ptr<v1::WorkerRegistry::Stub> stub_;
  std::string worker_id_;
  int interval_ms_ = 1000;
  std::atomic<bool> registered_{false}, draining_{false}, stopping_{false};
  std::mutex heartbeat_mu_;  // one heartbeat at a time (the loop's, or an announcement)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace freekv
