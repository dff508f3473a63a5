// The worker's control-plane view of its kvstore for the services: session lookup, occupancy and pool
// statistics over the kvstore's gRPC API. A plain stub, safe from any thread — unlike the engine's
// KvstoreClient, which belongs to the engine thread and carries the data plane.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "freekv/v1/kvstore.grpc.pb.h"

namespace freekv {

class KvstoreControl {
 public:
  // `socket`: the kvstore's unix socket (a path, "unix:" optional). Fails with UNAVAILABLE when it does not answer.
  static absl::StatusOr<std::unique_ptr<KvstoreControl>> connect(const std::string& socket);

  // host:pool, the same for every worker attached to this kvstore (they can take over each other's sessions).
  const std::string& id() const { return id_; }

  absl::StatusOr<v1::SessionInfo> get_session(const std::string& session_id);  // with per-layer occupancy
  absl::StatusOr<v1::ListSessionsResponse> list_sessions();
  absl::StatusOr<v1::PoolStats> pool_stats();
  absl::StatusOr<uint64_t> close_session(const std::string& session_id);  // blocks freed

 private:
  std::unique_ptr<v1::KvStore::Stub> stub_;
  std::string id_;
};

}  // namespace freekv
