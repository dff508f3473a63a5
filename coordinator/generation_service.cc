#include "coordinator/generation_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <glog/logging.h>

#include <thread>

#include "common/grpc_util.h"
#include "common/session_id.h"

namespace freekv {
namespace {

std::string random_session_id() {
  unsigned char b[8] = {0};
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!read(fd, b, sizeof b);
    close(fd);
  }
  std::string id = "s-";
  for (unsigned char c : b) id += absl::StrFormat("%02x", c);
  return id;
}

}  // namespace

absl::Status GenerationService::check_open() const {
  if (draining_.load()) {
    return absl::UnavailableError("the coordinator is shutting down; retry (another coordinator replica, or this one "
                                  "once restarted, takes the call)");
  }
  return absl::OkStatus();
}

void GenerationService::drain(std::chrono::milliseconds grace) {
  draining_.store(true);
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    if (open_calls_.load() == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::lock_guard lock(mu_);
  stopped_.store(true);
  for (grpc::ClientContext* c : forwarded_) c->TryCancel();
}

grpc::Status GenerationService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  CoordinatorMetrics::Stream stream(metrics_);
  open_calls_.fetch_add(1);
  grpc::Status s = generate_call(ctx, req, writer, &stream);
  open_calls_.fetch_sub(1);
  stream.finish(from_grpc(s));
  return s;
}

grpc::Status GenerationService::generate_call(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                              grpc::ServerWriter<v1::GenerateResponse>* writer,
                                              CoordinatorMetrics::Stream* stream) {
  absl::Status s = check_api_key(*ctx, api_keys_);
  if (s.ok()) s = check_open();
  if (!s.ok()) return to_grpc(s);
  s = check_generate_request(*req, limits_);
  if (!s.ok()) return to_grpc(s);
  const std::string& session = req->session_id();
  if (session.empty()) return to_grpc(generate(ctx, *req, writer, nullptr, stream));
  auto rec = cluster_->locate(session);
  if (!rec.ok()) return to_grpc(rec.status());
  s = cluster_->sessions().begin_turn(session, [ctx] { return ctx->IsCancelled(); });
  if (!s.ok()) return to_grpc(s);
  v1::GenerateDone done;
  s = generate(ctx, *req, writer, &done, stream);
  cluster_->sessions().end_turn(session, s.ok() ? &done : nullptr);
  return to_grpc(s);
}

absl::Status GenerationService::generate(grpc::ServerContext* ctx, const v1::GenerateRequest& req,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer, v1::GenerateDone* done,
                                         CoordinatorMetrics::Stream* stream) {
  const std::string& session = req.session_id();
  v1::GenerateDone local_done;
  if (done == nullptr) done = &local_done;
  for (int attempt = 0;; ++attempt) {
    std::optional<SessionRecord> rec;
    absl::StatusOr<std::shared_ptr<WorkerEntry>> w;
    if (!session.empty()) {
      rec = cluster_->sessions().find(session);
      if (!rec) return absl::NotFoundError(absl::StrCat("session '", session, "' was closed"));
      w = cluster_->route(*rec);
    } else {
      w = cluster_->route_new(false);
    }
    if (!w.ok()) return w.status();
    bool relayed = false, client_gone = false;
    grpc::Status s = forward(ctx, **w, req, writer, &relayed, done, &client_gone, stream);
    if (s.ok()) return absl::OkStatus();
    if (stopped_.load()) {
      return absl::UnavailableError(session.empty()
                                        ? "the coordinator shut down before this request finished; retry it"
                                        : "the coordinator shut down before this turn finished; the session keeps what "
                                          "was generated so far: send Generate on it again to continue");
    }
    if (client_gone) return from_grpc(s).ok() ? absl::CancelledError("the client went away") : from_grpc(s);
    // Errors of the request itself (bad input, unknown session, ...) reach the client as they are.
    if (!cluster_->dead_after_failure(**w, s)) return from_grpc(s);
    if (!relayed && attempt == 0) {
      // The worker died before answering; retry elsewhere when the attempt provably changed nothing.
      std::optional<SessionRecord> now;
      if (!session.empty()) now = cluster_->sessions().find(session);
      absl::StatusOr<std::shared_ptr<WorkerEntry>> next =
          session.empty() ? cluster_->route_new(false)
                          : now ? cluster_->route(*now) : absl::StatusOr<std::shared_ptr<WorkerEntry>>(absl::NotFoundError("closed"));
      if (next.ok() && retry_is_safe(rec ? &*rec : nullptr, **next)) {
        LOG(INFO) << "retrying a request that worker " << (*w)->id << " never answered on worker " << (*next)->id;
        metrics_->on_retry();
        continue;
      }
    }
    if (session.empty()) {
      return absl::UnavailableError(absl::StrCat("worker ", (*w)->id, " (", (*w)->info.address(),
                                                 ") stopped answering mid-generation (", s.error_message(),
                                                 "); retry the request"));
    }
    return absl::UnavailableError(absl::StrCat(
        "worker ", (*w)->id, " (", (*w)->info.address(), ") stopped answering mid-generation (", s.error_message(),
        "). Session '", session, "' keeps its KV in kvstore ", rec->kvstore_id,
        ": send Generate on it again to continue (an empty prompt continues the interrupted turn); a worker attached "
        "to that kvstore takes over"));
  }
}

bool GenerationService::retry_is_safe(const SessionRecord* rec, WorkerEntry& w) {
  if (rec == nullptr) return true;
  grpc::ClientContext ctx;
  cluster_->prepare(&ctx, 3000);
  v1::WorkerSessionRequest req;
  req.set_session_id(rec->id);
  v1::WorkerSessionInfo info;
  if (!w.stub->GetSessionInfo(&ctx, req, &info).ok()) return false;
  return int64_t(info.tokens()) == rec->tokens;
}

grpc::Status GenerationService::forward(grpc::ServerContext* ctx, WorkerEntry& w, const v1::GenerateRequest& req,
                                        grpc::ServerWriter<v1::GenerateResponse>* writer, bool* relayed,
                                        v1::GenerateDone* done, bool* client_gone, CoordinatorMetrics::Stream* stream) {
  // A child of the client's call: its deadline and cancellation carry over to the worker.
  std::unique_ptr<grpc::ClientContext> cctx = grpc::ClientContext::FromServerContext(*ctx);
  add_bearer(cctx.get(), cluster_->token());
  {
    std::lock_guard lock(mu_);
    if (stopped_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the coordinator is shutting down");
    forwarded_.insert(cctx.get());
  }
  w.in_flight.fetch_add(1);
  CancelWatcher::Guard guard = watcher_.watch(ctx, cctx.get());
  auto reader = w.stub->Generate(cctx.get(), req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_done()) *done = msg.done();
    if (msg.has_chunk()) stream->on_chunk(msg.chunk().token_ids_size());
    if (!writer->Write(msg)) {
      *client_gone = true;
      cctx->TryCancel();
      break;
    }
    *relayed = true;
  }
  grpc::Status s = reader->Finish();
  w.in_flight.fetch_sub(1);
  {
    std::lock_guard lock(mu_);
    forwarded_.erase(cctx.get());
  }
  if (s.ok() && !*client_gone && !done->has_usage()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the worker ended the stream without its final message");
  }
  if (ctx->IsCancelled()) *client_gone = true;
  return s;
}

grpc::Status GenerationService::CreateSession(grpc::ServerContext* ctx, const v1::CreateSessionRequest* req,
                                              v1::CreateSessionResponse* resp) {
  absl::Status s = check_api_key(*ctx, api_keys_);
  if (s.ok()) s = check_open();
  if (!s.ok()) return to_grpc(s);
  const std::string id = req->session_id().empty() ? random_session_id() : req->session_id();
  s = validate_session_id(id);
  if (!s.ok()) return to_grpc(s);
  if (cluster_->sessions().find(id)) {
    return to_grpc(absl::AlreadyExistsError(absl::StrCat("session '", id, "' already exists; continue it or pick another id")));
  }
  auto w = cluster_->route_new(/*need_kvstore=*/true);
  if (!w.ok()) return to_grpc(w.status());
  grpc::ClientContext cctx;
  cluster_->prepare(&cctx, 5000);
  v1::WorkerSessionRequest wreq;
  wreq.set_session_id(id);
  v1::WorkerSessionInfo info;
  grpc::Status gs = (*w)->stub->CreateSession(&cctx, wreq, &info);
  if (!gs.ok()) {
    cluster_->dead_after_failure(**w, gs);
    return to_grpc(worker_error(**w, gs, "could not create the session"));
  }
  SessionRecord rec;
  rec.id = id;
  rec.worker_id = (*w)->id;
  rec.kvstore_id = (*w)->info.kvstore_id();
  rec.created_unix_ms = now_unix_ms();
  rec.last_use_unix_ms = rec.created_unix_ms;
  s = cluster_->sessions().add(rec);
  if (!s.ok()) return to_grpc(s);
  (*w)->sessions.fetch_add(1);
  resp->set_session_id(id);
  resp->set_worker_id((*w)->id);
  return grpc::Status::OK;
}

grpc::Status GenerationService::CloseSession(grpc::ServerContext* ctx, const v1::CloseGenerationSessionRequest* req,
                                             v1::CloseGenerationSessionResponse* resp) {
  absl::Status s = check_api_key(*ctx, api_keys_);
  if (s.ok()) s = validate_session_id(req->session_id());
  if (!s.ok()) return to_grpc(s);
  auto rec = cluster_->locate(req->session_id());
  if (!rec.ok()) return to_grpc(rec.status());
  // Holding the turn keeps a Generate from starting while the session goes away.
  s = cluster_->sessions().begin_turn(rec->id);
  if (!s.ok()) return to_grpc(s);
  auto w = cluster_->route(*rec);
  if (!w.ok()) {
    cluster_->sessions().end_turn(rec->id, nullptr);
    return to_grpc(w.status());
  }
  grpc::ClientContext cctx;
  cluster_->prepare(&cctx, 5000);
  v1::WorkerSessionRequest wreq;
  wreq.set_session_id(rec->id);
  grpc::Status gs = (*w)->stub->CloseSession(&cctx, wreq, resp);
  if (!gs.ok() && gs.error_code() != grpc::StatusCode::NOT_FOUND) {
    cluster_->sessions().end_turn(rec->id, nullptr);
    cluster_->dead_after_failure(**w, gs);
    return to_grpc(worker_error(**w, gs, "could not close the session"));
  }
  cluster_->sessions().remove(rec->id);
  (*w)->sessions.fetch_sub(1);
  if (gs.error_code() == grpc::StatusCode::NOT_FOUND) return gs;
  return grpc::Status::OK;
}

}  // namespace freekv
