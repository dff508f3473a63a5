// The public Generation API (proto/freekv/v1/generation.proto): validates a request, routes it
// (session affinity, then least loaded), and relays the worker's token stream to the client.
//
// Cancellation and deadlines travel with the forwarded call (its context is a child of the client's,
// and a CancelWatcher cancels it once the client's call is done): a client that goes away, or whose
// deadline passes, cancels the worker's request.
//
// A worker that dies mid-stream ends the stream with UNAVAILABLE, marks the worker dead (after a
// failed health probe), and leaves the session's KV in the kvstore: the client's next Generate on the
// session goes to another worker attached to the same kvstore. A call that failed before the worker
// sent anything is retried once on another worker when that is provably safe: no session, or the
// session's stored tokens are what the last completed turn left (the failed attempt changed nothing).
//
// Shutdown (drain()): new calls are UNAVAILABLE at once; running streams get a grace period to finish,
// then their worker calls are cancelled and they end UNAVAILABLE (a session keeps what was generated).
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>

#include "coordinator/cancel_watcher.h"
#include "coordinator/cluster.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/request_checks.h"
#include "freekv/v1/generation.grpc.pb.h"

namespace freekv {

class GenerationService final : public v1::Generation::Service {
 public:
  // api_keys: with any, every call must carry one of them (check_api_key); empty: the API is open.
  GenerationService(Cluster* cluster, CoordinatorLimits limits, CoordinatorMetrics* metrics,
                    std::set<std::string> api_keys = {})
      : cluster_(cluster), limits_(limits), metrics_(metrics), api_keys_(std::move(api_keys)) {}

  // Refuses new calls; returns once no Generate stream is open, or after `grace` having cancelled the
  // open ones (they end UNAVAILABLE).
  void drain(std::chrono::milliseconds grace);

  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status CreateSession(grpc::ServerContext* ctx, const v1::CreateSessionRequest* req,
                             v1::CreateSessionResponse* resp) override;
  grpc::Status CloseSession(grpc::ServerContext* ctx, const v1::CloseGenerationSessionRequest* req,
                            v1::CloseGenerationSessionResponse* resp) override;

 private:
  grpc::Status generate_call(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                             grpc::ServerWriter<v1::GenerateResponse>* writer, CoordinatorMetrics::Stream* stream);
  absl::Status generate(grpc::ServerContext* ctx, const v1::GenerateRequest& req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer, v1::GenerateDone* done,
                        CoordinatorMetrics::Stream* stream);
  // One forwarded call; *relayed tells whether any message reached the client.
  grpc::Status forward(grpc::ServerContext* ctx, WorkerEntry& w, const v1::GenerateRequest& req,
                       grpc::ServerWriter<v1::GenerateResponse>* writer, bool* relayed, v1::GenerateDone* done,
                       bool* client_gone, CoordinatorMetrics::Stream* stream);
  // UNAVAILABLE once draining, else OK.
  absl::Status check_open() const;
  // True when a retry of the session's turn on `w` cannot double-feed anything.
  bool retry_is_safe(const SessionRecord* rec, WorkerEntry& w);

  Cluster* cluster_;
  CoordinatorLimits limits_;
  CoordinatorMetrics* metrics_;
  const std::set<std::string> api_keys_;
  CancelWatcher watcher_;
  std::atomic<bool> draining_{false};
  std::atomic<int> open_calls_{0};            // Generate calls between arrival and status
  std::atomic<bool> stopped_{false};          // the grace ran out: open streams are being cancelled
  std::mutex mu_;
  std::set<grpc::ClientContext*> forwarded_;  // worker calls in flight, cancelled when stopped_
};

}  // namespace freekv
