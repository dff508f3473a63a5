#include "coordinator/cluster.h"

#include "common/grpc_util.h"

namespace freekv {

absl::Status worker_error(const WorkerEntry& w, const grpc::Status& s, const std::string& doing) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("worker ", w.id, " (", w.info.address(), ") ", doing, ": ", s.error_message()));
}

void Cluster::prepare(grpc::ClientContext* ctx, int64_t timeout_ms) const {
  add_bearer(ctx, token_);
  ctx->set_deadline(deadline_in(timeout_ms));
}

bool Cluster::dead_after_failure(WorkerEntry& w, const grpc::Status& failure) {
  if (failure.error_code() != grpc::StatusCode::UNAVAILABLE && failure.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
      failure.error_code() != grpc::StatusCode::INTERNAL && failure.error_code() != grpc::StatusCode::UNKNOWN) {
    return false;
  }
  const std::string health = health_status(make_channel(w.info.address()), std::chrono::milliseconds(1000));
  if (health == "SERVING") return false;
  registry_->mark_dead(w.id, absl::StrCat("a call failed (", failure.error_message(), ") and its health check says ", health));
  return true;
}

absl::StatusOr<SessionRecord> Cluster::locate(const std::string& session_id) {
  if (auto r = sessions_->find(session_id)) return *r;
  // Not in the table: ask each kvstore through one of its workers.
  for (const auto& w : registry_->one_per_kvstore()) {
    grpc::ClientContext ctx;
    prepare(&ctx, 3000);
    v1::WorkerSessionRequest req;
    req.set_session_id(session_id);
    v1::WorkerSessionInfo info;
    if (!w->stub->GetSessionInfo(&ctx, req, &info).ok()) continue;
    SessionRecord rec;
    rec.id = session_id;
    rec.worker_id = w->id;
    rec.kvstore_id = w->info.kvstore_id();
    rec.created_unix_ms = info.created_unix_ms();
    rec.last_use_unix_ms = info.last_use_unix_ms();
    rec.tokens = int64_t(info.tokens());
    if (sessions_->add(rec).ok()) w->sessions.fetch_add(1);
    if (auto r = sessions_->find(session_id)) return *r;
  }
  return absl::NotFoundError(absl::StrCat("unknown session '", session_id,
                                          "'; create it first (CreateSession, or `freekv generate --new-session`)"));
}

absl::StatusOr<std::shared_ptr<WorkerEntry>> Cluster::route(const SessionRecord& rec) {
  std::shared_ptr<WorkerEntry> w = registry_->get(rec.worker_id);
  if (w != nullptr && registry_->usable(*w)) return w;
  w = registry_->pick(rec.kvstore_id, /*need_kvstore=*/true);
  if (w == nullptr) {
    return absl::UnavailableError(absl::StrCat("session '", rec.id, "' keeps its KV in kvstore ", rec.kvstore_id,
                                               ", and no live worker is attached to it; start a freekv-worker with --kvstore "
                                               "on that host and --coordinator pointing here, then retry"));
  }
  if (auto old = registry_->get(rec.worker_id)) old->sessions.fetch_sub(1);
  w->sessions.fetch_add(1);
  sessions_->set_worker(rec.id, w->id);
  return w;
}

absl::StatusOr<std::shared_ptr<WorkerEntry>> Cluster::route_new(bool need_kvstore) {
  std::shared_ptr<WorkerEntry> w = registry_->pick("", need_kvstore);
  if (w == nullptr) {
    return absl::UnavailableError(need_kvstore
        ? "no worker with a kvstore takes requests (none registered, or all dead or draining); start freekv-worker "
          "--kvstore SOCKET --coordinator ADDR"
        : "no worker takes requests (none registered, or all dead or draining); start freekv-worker --coordinator ADDR "
          "(or use `freekv up`)");
  }
  return w;
}

}  // namespace freekv
