#include "worker/service/kvstore_control.h"

#include <unistd.h>

#include "absl/strings/match.h"
#include "common/grpc_util.h"

namespace freekv {
namespace {

constexpr int64_t kTimeoutMs = 5000;

absl::Status kvstore_error(const grpc::Status& s) {
  absl::Status st = from_grpc(s);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(absl::StrCat("the kvstore does not answer (", s.error_message(),
                                               "); check that freekv-kvstore runs"));
  }
  return st;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvstoreControl>> KvstoreControl::connect(const std::string& socket) {
  const std::string path = absl::StartsWith(socket, "unix:") ? socket.substr(5) : socket;
  std::unique_ptr<KvstoreControl> c(new KvstoreControl());
  c->stub_ = v1::KvStore::NewStub(make_channel("unix:" + path));
  FREEKV_ASSIGN_OR_RETURN(v1::PoolStats stats, c->pool_stats());
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  c->id_ = absl::StrCat(host, ":", stats.pool_name());
  return c;
}

absl::StatusOr<v1::SessionInfo> KvstoreControl::get_session(const std::string& session_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(kTimeoutMs));
  v1::GetSessionRequest req;
  req.set_session_id(session_id);
  v1::GetSessionResponse resp;
  grpc::Status s = stub_->GetSession(&ctx, req, &resp);
  if (!s.ok()) return kvstore_error(s);
  return resp.session();
}

absl::StatusOr<v1::ListSessionsResponse> KvstoreControl::list_sessions() {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(kTimeoutMs));
  v1::ListSessionsResponse resp;
  grpc::Status s = stub_->ListSessions(&ctx, v1::ListSessionsRequest(), &resp);
  if (!s.ok()) return kvstore_error(s);
  return resp;
}

absl::StatusOr<v1::PoolStats> KvstoreControl::pool_stats() {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(kTimeoutMs));
  v1::GetPoolStatsResponse resp;
  grpc::Status s = stub_->GetPoolStats(&ctx, v1::GetPoolStatsRequest(), &resp);
  if (!s.ok()) return kvstore_error(s);
  return resp.stats();
}

absl::StatusOr<uint64_t> KvstoreControl::close_session(const std::string& session_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(kTimeoutMs));
  v1::CloseSessionRequest req;
  req.set_session_id(session_id);
  v1::CloseSessionResponse resp;
  grpc::Status s = stub_->CloseSession(&ctx, req, &resp);
  if (!s.ok()) return kvstore_error(s);
  return resp.blocks_freed();
}

}  // namespace freekv
