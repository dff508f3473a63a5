#include "worker/service/registration.h"

#include <glog/logging.h>

#include "common/grpc_util.h"

namespace freekv {

Registrar::Registrar(std::string coordinator, std::shared_ptr<grpc::ChannelCredentials> credentials, std::string token,
                     v1::RegisterWorkerRequest info, std::function<void(const std::string&)> on_registered,
                     std::function<v1::WorkerLoad()> load)
    : coordinator_(std::move(coordinator)), token_(std::move(token)), info_(std::move(info)),
      on_registered_(std::move(on_registered)), load_(std::move(load)) {
  stub_ = v1::WorkerRegistry::NewStub(make_channel(coordinator_, std::move(credentials)));
  thread_ = std::thread([this] { loop(); });
}

Registrar::~Registrar() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Registrar::do_register() {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(3000));
  add_bearer(&ctx, token_);
  v1::RegisterWorkerResponse resp;
  grpc::Status s = stub_->Register(&ctx, info_, &resp);
  if (!s.ok()) {
    LOG_EVERY_N(WARNING, 10) << "cannot register with the coordinator at " << coordinator_ << ": " << s.error_message()
                             << " (retrying)";
    return false;
  }
  worker_id_ = resp.worker_id();
  interval_ms_ = resp.heartbeat_interval_ms() > 0 ? resp.heartbeat_interval_ms() : 1000;
  on_registered_(worker_id_);
  LOG(INFO) << "registered with the coordinator at " << coordinator_ << " as " << worker_id_;
  registered_.store(true);
  return true;
}

void Registrar::announce_stopping() {
  stopping_.store(true);
  if (registered_.load()) heartbeat();
}

void Registrar::announce_exit() {
  if (registered_.load()) heartbeat(/*exiting=*/true);
}

void Registrar::heartbeat(bool exiting) {
  std::lock_guard<std::mutex> serial(heartbeat_mu_);
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(std::max(1000, interval_ms_)));
  add_bearer(&ctx, token_);
  v1::HeartbeatRequest req;
  req.set_worker_id(worker_id_);
  *req.mutable_load() = load_();
  req.set_stopping(stopping_.load());
  req.set_exiting(exiting);
  v1::HeartbeatResponse resp;
  grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
  if (!s.ok()) {
    LOG_EVERY_N(WARNING, 10) << "heartbeat to " << coordinator_ << " failed: " << s.error_message();
    return;
  }
  if (!resp.known()) {
    LOG(INFO) << "the coordinator does not know worker " << worker_id_ << " any more; registering again";
    registered_.store(false);
    return;
  }
  if (resp.draining() != draining_.load()) {
    LOG(INFO) << (resp.draining() ? "the coordinator drains this worker" : "the coordinator routes to this worker again");
  }
  draining_.store(resp.draining());
}

void Registrar::loop() {
  while (true) {
    int wait_ms;
    if (!registered_.load()) {
      // The coordinator may still be starting; once registered, heartbeat at the interval it gave.
      wait_ms = do_register() ? interval_ms_ : 200;
    } else {
      heartbeat();
      wait_ms = registered_.load() ? interval_ms_ : 0;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stop_; })) return;
  }
}

}  // namespace freekv
