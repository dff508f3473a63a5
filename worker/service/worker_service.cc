#include "worker/service/worker_service.h"

#include <chrono>
#include <thread>

#include "common/grpc_util.h"
#include "common/session_id.h"

namespace freekv {
namespace {

using Clock = std::chrono::steady_clock;

// How often a Generate handler looks at its call (cancellation, deadline) while waiting for tokens.
constexpr auto kPollInterval = std::chrono::milliseconds(20);
// How long a cancelled request may take to leave the batch before the handler returns anyway.
constexpr auto kCancelWait = std::chrono::seconds(5);

}  // namespace

WorkerService::WorkerService(Engine* engine, Scheduler* scheduler, KvstoreControl* kvstore, std::string token,
                             RequestLimits limits)
    : engine_(engine), scheduler_(scheduler), kvstore_(kvstore), token_(std::move(token)), limits_(limits) {}

void WorkerService::set_worker_id(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  worker_id_ = id;
}

std::string WorkerService::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

absl::Status WorkerService::authorize(const grpc::ServerContext& ctx) const {
  if (token_.empty()) return absl::OkStatus();
  return check_bearer(ctx, token_, "");
}

absl::Status WorkerService::need_kvstore() const {
  if (kvstore_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError("this worker has no kvstore, so it keeps no sessions; start it with --kvstore SOCKET");
}

absl::StatusOr<v1::SessionInfo> WorkerService::find_session(const std::string& session_id) {
  FREEKV_RETURN_IF_ERROR(validate_session_id(session_id));
  FREEKV_RETURN_IF_ERROR(need_kvstore());
  auto info = kvstore_->get_session(session_id);
  if (info.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(absl::StrCat("unknown session '", session_id,
                                            "'; create it first (CreateSession, or `freekv generate --new-session`)"));
  }
  return info;
}

grpc::Status WorkerService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                     grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return to_grpc(stream(ctx, *req, writer));
}

absl::Status WorkerService::stream(grpc::ServerContext* ctx, const v1::GenerateRequest& req,
                                   grpc::ServerWriter<v1::GenerateResponse>* writer) {
  FREEKV_RETURN_IF_ERROR(authorize(*ctx));
  int64_t session_tokens = 0;
  if (!req.session_id().empty()) {
    FREEKV_ASSIGN_OR_RETURN(v1::SessionInfo info, find_session(req.session_id()));
    session_tokens = int64_t(info.n_tokens());
  }
  FREEKV_ASSIGN_OR_RETURN(GenerateRequest request, to_engine_request(req, engine_->tokenizer(), engine_->chat_template(), engine_->weights().config,
                                                                     session_tokens, limits_));
  // The coordinator runs one turn per session at a time, so a session still busy here is a cancelled
  // turn that has not left the batch yet: wait for it briefly.
  absl::StatusOr<std::shared_ptr<Job>> submitted = scheduler_->submit(request);
  for (const auto until = Clock::now() + kCancelWait;
       !submitted.ok() && submitted.status().code() == absl::StatusCode::kFailedPrecondition && Clock::now() < until &&
       !ctx->IsCancelled();) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    submitted = scheduler_->submit(request);
  }
  if (!submitted.ok()) return submitted.status();
  std::shared_ptr<Job> job = std::move(*submitted);

  std::vector<int32_t> ids;
  std::string text;
  absl::Status stopped;  // why the handler gave up on the job (client gone, deadline)
  Clock::time_point last_write;  // of a chunk; the first one goes out at once
  while (true) {
    bool done = job->done();  // read before take(): then everything it published is taken below
    job->wait(Clock::now() + kPollInterval);
    if (!done && stream_interval_.count() > 0 && Clock::now() < last_write + stream_interval_) {
      // Let more tokens join this message (see set_stream_interval).
      while (!job->done() && Clock::now() < last_write + stream_interval_) {
        std::this_thread::sleep_for(last_write + stream_interval_ - Clock::now());
      }
      done = job->done();
    }
    job->take(&ids, &text);
    if (!ids.empty() || !text.empty()) {
      last_write = Clock::now();
      v1::GenerateResponse msg;
      msg.mutable_chunk()->mutable_token_ids()->Add(ids.begin(), ids.end());
      msg.mutable_chunk()->set_text(text);
      if (!writer->Write(msg)) {
        stopped = absl::CancelledError("the client went away");
        break;
      }
    }
    if (done) break;
    if (ctx->IsCancelled()) {
      stopped = std::chrono::system_clock::now() >= ctx->deadline()
                    ? absl::DeadlineExceededError("the request's deadline passed before generation finished")
                    : absl::CancelledError("the client cancelled the request");
      break;
    }
  }
  if (!stopped.ok()) {
    job->cancel(stopped);
    // Let the engine drop it, so a next turn of the session does not find it still busy.
    const auto until = Clock::now() + kCancelWait;
    while (!job->done() && Clock::now() < until) job->wait(Clock::now() + kPollInterval);
    return stopped;
  }
  if (!job->result().ok()) return job->result().status();
  v1::GenerateResponse last;
  *last.mutable_done() = make_done(*job->result(), *job, engine_->options().retrieval.policy, worker_id());
  writer->Write(last);
  return absl::OkStatus();
}

grpc::Status WorkerService::CreateSession(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req,
                                          v1::WorkerSessionInfo* resp) {
  absl::Status s = authorize(*ctx);
  if (s.ok()) s = validate_session_id(req->session_id());
  if (s.ok()) s = need_kvstore();
  if (!s.ok()) return to_grpc(s);
  // Through the engine's kvstore client, so the session gets exactly the geometry its sequences use.
  absl::StatusOr<KvSessionInfo> info = absl::UnavailableError("the worker is shutting down; create the session elsewhere");
  scheduler_->run_on_engine([&](Engine& e) {
    absl::Status attached = e.reattach_kvstore_if_gone();
    info = attached.ok() ? e.kvstore()->create_session(req->session_id(), session_geometry(e.kv_pool().geometry()))
                         : absl::StatusOr<KvSessionInfo>(attached);
  });
  if (!info.ok()) return to_grpc(info.status());
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  resp->set_session_id(req->session_id());
  resp->set_created_unix_ms(now);
  resp->set_last_use_unix_ms(now);
  return grpc::Status::OK;
}

grpc::Status WorkerService::CloseSession(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req,
                                         v1::CloseGenerationSessionResponse* resp) {
  absl::Status s = authorize(*ctx);
  if (!s.ok()) return to_grpc(s);
  auto info = find_session(req->session_id());
  if (!info.ok()) return to_grpc(info.status());
  if (scheduler_->session_busy(req->session_id())) {
    return to_grpc(absl::FailedPreconditionError(absl::StrCat("session '", req->session_id(),
                                                              "' is generating; cancel that request or wait for it, then close")));
  }
  auto freed = kvstore_->close_session(req->session_id());
  if (!freed.ok()) return to_grpc(freed.status());
  resp->set_freed_tokens(info->n_tokens());
  return grpc::Status::OK;
}

absl::Status WorkerService::fill_session_info(const std::string& session_id, bool with_layers, v1::WorkerSessionInfo* out) {
  FREEKV_ASSIGN_OR_RETURN(v1::SessionInfo info, find_session(session_id));
  out->set_session_id(session_id);
  out->set_tokens(info.n_tokens());
  out->set_created_unix_ms(info.created_unix_ms());
  out->set_last_use_unix_ms(info.last_use_unix_ms());
  out->set_generating(scheduler_->session_busy(session_id));
  v1::SessionKvOccupancy* occ = out->mutable_occupancy();
  occ->set_kvstore_id(kvstore_->id());
  occ->set_page_bytes(info.page_bytes());
  occ->set_host_pages(info.committed_pages());
  occ->set_host_bytes(info.bytes());
  if (!with_layers) return absl::OkStatus();
  std::optional<SessionResidency> res;
  if (out->generating()) res = scheduler_->residency(session_id);
  if (res.has_value()) {
    occ->set_worker_kv_bytes(uint64_t(res->kv_bytes));
    occ->set_worker_kv_peak_bytes(uint64_t(res->kv_peak_bytes));
    occ->set_digest_bytes(uint64_t(res->digest_bytes));
  }
  for (const v1::LayerOccupancy& l : info.layers()) {
    v1::LayerKvOccupancy* o = occ->add_layers();
    o->set_layer(l.layer());
    o->set_host_pages(l.pages());
    o->set_host_bytes(l.bytes());
    o->set_highest_host_page(l.highest_page());
    if (res.has_value() && l.layer() < res->layers.size()) {
      const SessionResidency::Layer& r = res->layers[l.layer()];
      o->set_worker_pages(uint64_t(r.local_pages));
      o->set_worker_bytes(uint64_t(r.local_pages * res->page_bytes));
      o->set_selected_chunks(uint64_t(r.selected_chunks));
      o->set_selected_bytes(uint64_t(r.selected_chunks * res->chunk_bytes));
    }
    occ->set_worker_pages(occ->worker_pages() + o->worker_pages());
    occ->set_worker_bytes(occ->worker_bytes() + o->worker_bytes());
    occ->set_selected_chunks(occ->selected_chunks() + o->selected_chunks());
    occ->set_selected_bytes(occ->selected_bytes() + o->selected_bytes());
  }
  return absl::OkStatus();
}

grpc::Status WorkerService::GetSessionInfo(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req,
                                           v1::WorkerSessionInfo* resp) {
  absl::Status s = authorize(*ctx);
  if (s.ok()) s = fill_session_info(req->session_id(), /*with_layers=*/true, resp);
  return to_grpc(s);
}

grpc::Status WorkerService::ListSessions(grpc::ServerContext* ctx, const v1::WorkerListSessionsRequest*,
                                         v1::WorkerListSessionsResponse* resp) {
  absl::Status s = authorize(*ctx);
  if (s.ok()) s = need_kvstore();
  if (!s.ok()) return to_grpc(s);
  auto list = kvstore_->list_sessions();
  if (!list.ok()) return to_grpc(list.status());
  for (const v1::SessionInfo& info : list->sessions()) {
    if (info.session_id().rfind("private-", 0) == 0) continue;  // one-off requests' own sessions
    v1::WorkerSessionInfo* o = resp->add_sessions();
    o->set_session_id(info.session_id());
    o->set_tokens(info.n_tokens());
    o->set_created_unix_ms(info.created_unix_ms());
    o->set_last_use_unix_ms(info.last_use_unix_ms());
    o->set_generating(scheduler_->session_busy(info.session_id()));
    o->mutable_occupancy()->set_kvstore_id(kvstore_->id());
    o->mutable_occupancy()->set_page_bytes(info.page_bytes());
    o->mutable_occupancy()->set_host_pages(info.committed_pages());
    o->mutable_occupancy()->set_host_bytes(info.bytes());
  }
  return grpc::Status::OK;
}

grpc::Status WorkerService::GetPoolStats(grpc::ServerContext* ctx, const v1::WorkerPoolStatsRequest*,
                                         v1::WorkerPoolStatsResponse* resp) {
  absl::Status s = authorize(*ctx);
  if (!s.ok()) return to_grpc(s);
  if (kvstore_ != nullptr) {
    auto stats = kvstore_->pool_stats();
    if (!stats.ok()) return to_grpc(stats.status());
    resp->mutable_kvstore()->set_kvstore_id(kvstore_->id());
    *resp->mutable_kvstore()->mutable_stats() = *stats;
  }
  v1::WorkerKvPoolStats* local = resp->mutable_local();
  local->set_worker_id(worker_id());
  // Readable from this thread: the count in use is atomic, the rest fixed at start.
  const KvBlockPool& pool = engine_->kv_pool();
  local->set_blocks_in_use(pool.blocks_in_use());
  local->set_max_blocks(pool.max_blocks());
  local->set_block_bytes(pool.geometry().block_bytes());
  return grpc::Status::OK;
}

}  // namespace freekv
