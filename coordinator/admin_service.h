// The Admin API (proto/freekv/v1/admin.proto): workers, sessions with their KV occupancy per tier,
// pool statistics, draining. Every call needs the bearer token of --admin-token-file. Occupancy comes
// from where it lives: host pages from the kvstore, worker-resident pages from the worker running the
// session, recall bytes and correction rate from the turns this coordinator relayed.
#pragma once

#include "coordinator/cluster.h"
#include "freekv/v1/admin.grpc.pb.h"

namespace freekv {

class AdminService final : public v1::Admin::Service {
 public:
  explicit AdminService(Cluster* cluster) : cluster_(cluster) {}

  grpc::Status ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest* req, v1::ListWorkersResponse* resp) override;
  grpc::Status ListSessions(grpc::ServerContext* ctx, const v1::AdminListSessionsRequest* req,
                            v1::AdminListSessionsResponse* resp) override;
  grpc::Status GetSession(grpc::ServerContext* ctx, const v1::AdminGetSessionRequest* req,
                          v1::AdminGetSessionResponse* resp) override;
  grpc::Status GetPoolStats(grpc::ServerContext* ctx, const v1::AdminGetPoolStatsRequest* req,
                            v1::AdminGetPoolStatsResponse* resp) override;
  grpc::Status DrainWorker(grpc::ServerContext* ctx, const v1::DrainWorkerRequest* req, v1::DrainWorkerResponse* resp) override;

 private:
  absl::Status authorize(const grpc::ServerContext& ctx) const;
  Cluster* cluster_;
};

// The coordinator's side of registration and heartbeats (proto/freekv/v1/worker.proto). Needs the
// admin bearer token when the coordinator has one.
class RegistryService final : public v1::WorkerRegistry::Service {
 public:
  explicit RegistryService(Cluster* cluster) : cluster_(cluster) {}
  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterWorkerRequest* req, v1::RegisterWorkerResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req, v1::HeartbeatResponse* resp) override;

 private:
  Cluster* cluster_;
};

}  // namespace freekv
