#include "coordinator/admin_service.h"

#include <map>

#include "common/grpc_util.h"
#include "common/session_id.h"

namespace freekv {
namespace {

constexpr char kNoToken[] =
    "the admin API is disabled: start freekv-coordinator with --admin-token-file FILE (freekv up creates one)";

void fill_summary(const SessionRecord& r, v1::SessionSummary* s) {
  s->set_session_id(r.id);
  s->set_worker_id(r.worker_id);
  s->set_kvstore_id(r.kvstore_id);
  s->set_tokens(uint64_t(r.tokens));
  s->set_generating(r.generating);
  s->set_turns(r.turns);
  s->set_created_unix_ms(r.created_unix_ms);
  s->set_last_use_unix_ms(r.last_use_unix_ms);
}

}  // namespace

absl::Status AdminService::authorize(const grpc::ServerContext& ctx) const {
  return check_bearer(ctx, cluster_->token(), kNoToken);
}

grpc::Status AdminService::ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest*, v1::ListWorkersResponse* resp) {
  if (absl::Status s = authorize(*ctx); !s.ok()) return to_grpc(s);
  for (const auto& w : cluster_->registry().all()) *resp->add_workers() = cluster_->registry().status(*w);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListSessions(grpc::ServerContext* ctx, const v1::AdminListSessionsRequest*,
                                        v1::AdminListSessionsResponse* resp) {
  if (absl::Status s = authorize(*ctx); !s.ok()) return to_grpc(s);
  // The kvstores hold every session (also those of an earlier coordinator); the table adds routing.
  std::map<std::string, v1::SessionSummary> out;
  for (const SessionRecord& r : cluster_->sessions().list()) fill_summary(r, &out[r.id]);
  for (const auto& w : cluster_->registry().one_per_kvstore()) {
    grpc::ClientContext cctx;
    cluster_->prepare(&cctx, 5000);
    v1::WorkerListSessionsResponse list;
    grpc::Status gs = w->stub->ListSessions(&cctx, v1::WorkerListSessionsRequest(), &list);
    if (!gs.ok()) {
      cluster_->dead_after_failure(*w, gs);
      continue;  // that kvstore's sessions are listed from the table only
    }
    for (const v1::WorkerSessionInfo& info : list.sessions()) {
      v1::SessionSummary& s = out[info.session_id()];
      if (s.session_id().empty()) {  // not in the table
        s.set_session_id(info.session_id());
        s.set_kvstore_id(w->info.kvstore_id());
        s.set_created_unix_ms(info.created_unix_ms());
      }
      s.set_tokens(info.tokens());
      s.set_host_bytes(info.occupancy().host_bytes());
      s.set_last_use_unix_ms(std::max(s.last_use_unix_ms(), info.last_use_unix_ms()));
    }
  }
  for (auto& [id, s] : out) *resp->add_sessions() = s;
  return grpc::Status::OK;
}

grpc::Status AdminService::GetSession(grpc::ServerContext* ctx, const v1::AdminGetSessionRequest* req,
                                      v1::AdminGetSessionResponse* resp) {
  if (absl::Status s = authorize(*ctx); !s.ok()) return to_grpc(s);
  if (absl::Status s = validate_session_id(req->session_id()); !s.ok()) return to_grpc(s);
  auto rec = cluster_->locate(req->session_id());
  if (!rec.ok()) return to_grpc(rec.status());
  // The worker running the session knows its resident pages; any worker on the kvstore knows the rest.
  std::shared_ptr<WorkerEntry> w = cluster_->registry().get(rec->worker_id);
  if (w == nullptr || w->dead) w = cluster_->registry().pick(rec->kvstore_id, true);
  if (w == nullptr) {
    return to_grpc(absl::UnavailableError(absl::StrCat("no live worker is attached to kvstore ", rec->kvstore_id,
                                                       ", which holds session '", rec->id, "'; start one to inspect it")));
  }
  grpc::ClientContext cctx;
  cluster_->prepare(&cctx, 5000);
  v1::WorkerSessionRequest wreq;
  wreq.set_session_id(rec->id);
  v1::WorkerSessionInfo info;
  grpc::Status gs = w->stub->GetSessionInfo(&cctx, wreq, &info);
  if (!gs.ok()) {
    cluster_->dead_after_failure(*w, gs);
    return to_grpc(worker_error(*w, gs, "could not report the session"));
  }
  v1::SessionDetail* d = resp->mutable_session();
  fill_summary(*rec, d->mutable_summary());
  d->mutable_summary()->set_tokens(info.tokens());
  d->mutable_summary()->set_host_bytes(info.occupancy().host_bytes());
  d->mutable_summary()->set_generating(rec->generating || info.generating());
  *d->mutable_occupancy() = info.occupancy();
  *d->mutable_retrieval() = rec->retrieval;
  d->set_prompt_tokens(rec->prompt_tokens);
  d->set_reused_tokens(rec->reused_tokens);
  d->set_generated_tokens(rec->generated_tokens);
  return grpc::Status::OK;
}

grpc::Status AdminService::GetPoolStats(grpc::ServerContext* ctx, const v1::AdminGetPoolStatsRequest*,
                                        v1::AdminGetPoolStatsResponse* resp) {
  if (absl::Status s = authorize(*ctx); !s.ok()) return to_grpc(s);
  std::map<std::string, v1::KvstorePoolStats> kvstores;
  for (const auto& w : cluster_->registry().alive()) {
    grpc::ClientContext cctx;
    cluster_->prepare(&cctx, 5000);
    v1::WorkerPoolStatsResponse stats;
    grpc::Status gs = w->stub->GetPoolStats(&cctx, v1::WorkerPoolStatsRequest(), &stats);
    if (!gs.ok()) {
      cluster_->dead_after_failure(*w, gs);
      continue;
    }
    *resp->add_workers() = stats.local();
    resp->mutable_workers()->rbegin()->set_worker_id(w->id);
    if (stats.has_kvstore()) {
      v1::KvstorePoolStats& k = kvstores[stats.kvstore().kvstore_id()];
      if (!k.has_stats()) {
        k.set_kvstore_id(stats.kvstore().kvstore_id());
        *k.mutable_stats() = stats.kvstore().stats();
      }
      k.add_worker_ids(w->id);
    }
  }
  for (auto& [id, k] : kvstores) *resp->add_kvstores() = k;
  return grpc::Status::OK;
}

grpc::Status AdminService::DrainWorker(grpc::ServerContext* ctx, const v1::DrainWorkerRequest* req, v1::DrainWorkerResponse* resp) {
  if (absl::Status s = authorize(*ctx); !s.ok()) return to_grpc(s);
  if (absl::Status s = cluster_->registry().drain(req->worker_id()); !s.ok()) return to_grpc(s);
  *resp->mutable_worker() = cluster_->registry().status(*cluster_->registry().get(req->worker_id()));
  return grpc::Status::OK;
}

grpc::Status RegistryService::Register(grpc::ServerContext* ctx, const v1::RegisterWorkerRequest* req,
                                       v1::RegisterWorkerResponse* resp) {
  if (!cluster_->token().empty()) {
    if (absl::Status s = check_bearer(*ctx, cluster_->token(), kNoToken); !s.ok()) return to_grpc(s);
  }
  if (req->address().empty() || req->address().find(':') == std::string::npos) {
    return to_grpc(absl::InvalidArgumentError("a worker must register with its host:port address"));
  }
  resp->set_worker_id(cluster_->registry().add(*req));
  resp->set_heartbeat_interval_ms(int32_t(cluster_->registry().heartbeat_interval().count()));
  return grpc::Status::OK;
}

grpc::Status RegistryService::Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req, v1::HeartbeatResponse* resp) {
  if (!cluster_->token().empty()) {
    if (absl::Status s = check_bearer(*ctx, cluster_->token(), kNoToken); !s.ok()) return to_grpc(s);
  }
  bool draining = false;
  resp->set_known(cluster_->registry().heartbeat(*req, &draining));
  resp->set_draining(draining);
  return grpc::Status::OK;
}

}  // namespace freekv
