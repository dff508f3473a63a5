// The Worker API (proto/freekv/v1/worker.proto) over one engine and its continuous-batching
// scheduler: generation streamed token chunk by token chunk as the engine thread samples them,
// sessions in the attached kvstore, occupancy and pool statistics.
//
// A Generate handler thread submits the request to the scheduler and relays what it produces; it polls
// its call every few milliseconds, so a client that goes away or a deadline that passes cancels the
// request before the engine's next step (pages released; a kept session keeps what was generated).
// Sessions are checked against the kvstore before admission: unknown is NOT_FOUND.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "freekv/v1/worker.grpc.pb.h"
#include "worker/engine/generate.h"
#include "worker/engine/scheduler.h"
#include "worker/service/kvstore_control.h"
#include "worker/service/request_convert.h"

namespace freekv {

class WorkerService final : public v1::Worker::Service {
 public:
  // kvstore may be null (no sessions then). token: required bearer token of every call ("" = none).
  WorkerService(Engine* engine, Scheduler* scheduler, KvstoreControl* kvstore, std::string token, RequestLimits limits);

  // Tokens sampled within `interval` of a stream's previous message wait for it to elapse and go in
  // one message: when steps take well under a millisecond (small models), a message per token costs
  // more CPU than the steps. Steps slower than the interval stream every token at once. 0 = never wait.
  void set_stream_interval(std::chrono::microseconds interval) { stream_interval_ = interval; }

  // The id the coordinator gave this worker (reported in GenerateDone).
  void set_worker_id(const std::string& id);
  std::string worker_id() const;

  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status CreateSession(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req, v1::WorkerSessionInfo* resp) override;
  grpc::Status CloseSession(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req,
                            v1::CloseGenerationSessionResponse* resp) override;
  grpc::Status GetSessionInfo(grpc::ServerContext* ctx, const v1::WorkerSessionRequest* req, v1::WorkerSessionInfo* resp) override;
  grpc::Status ListSessions(grpc::ServerContext* ctx, const v1::WorkerListSessionsRequest* req,
                            v1::WorkerListSessionsResponse* resp) override;
  grpc::Status GetPoolStats(grpc::ServerContext* ctx, const v1::WorkerPoolStatsRequest* req,
                            v1::WorkerPoolStatsResponse* resp) override;

 private:
  absl::Status authorize(const grpc::ServerContext& ctx) const;
  absl::Status need_kvstore() const;
  // The session's kvstore record; NOT_FOUND with a message that says how to create it.
  absl::StatusOr<v1::SessionInfo> find_session(const std::string& session_id);
  absl::Status fill_session_info(const std::string& session_id, bool with_layers, v1::WorkerSessionInfo* out);
  absl::Status stream(grpc::ServerContext* ctx, const v1::GenerateRequest& req, grpc::ServerWriter<v1::GenerateResponse>* writer);

  Engine* engine_;
  Scheduler* scheduler_;
  KvstoreControl* kvstore_;
  std::string token_;
  RequestLimits limits_;
  std::chrono::microseconds stream_interval_{0};
  mutable std::mutex mu_;
  std::string worker_id_;
};

}  // namespace freekv
