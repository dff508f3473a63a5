// What the coordinator's services share: the registry of workers, the session table, and how to reach
// a session's worker — affinity first, then the least loaded worker attached to the session's kvstore.
#pragma once

#include <memory>
#include <string>

#include "coordinator/registry.h"
#include "coordinator/session_table.h"

namespace freekv {

class Cluster {
 public:
  Cluster(Registry* registry, SessionTable* sessions, std::string token)
      : registry_(registry), sessions_(sessions), token_(std::move(token)) {}

  Registry& registry() { return *registry_; }
  SessionTable& sessions() { return *sessions_; }

  // The session's record. A session the table does not know but a kvstore does (the coordinator
  // restarted) is adopted. NOT_FOUND otherwise.
  absl::StatusOr<SessionRecord> locate(const std::string& session_id);
  // The worker for the session's next call: its affinity worker while alive and not draining, else the
  // least loaded one attached to its kvstore (becoming its affinity). UNAVAILABLE when none is alive.
  absl::StatusOr<std::shared_ptr<WorkerEntry>> route(const SessionRecord& record);
  // The least loaded worker for a request without a session (need_kvstore: one that keeps sessions).
  absl::StatusOr<std::shared_ptr<WorkerEntry>> route_new(bool need_kvstore);

  // A context for a call to a worker: the bearer token and a deadline.
  void prepare(grpc::ClientContext* ctx, int64_t timeout_ms) const;
  // After a call to `w` failed: when the failure says the worker may be gone, asks its health service
  // and marks it dead if it does not answer. True when the worker is now dead.
  bool dead_after_failure(WorkerEntry& w, const grpc::Status& failure);

  const std::string& token() const { return token_; }

 private:
  Registry* registry_;
  SessionTable* sessions_;
  std::string token_;
};

// The status of a failed call to worker `w`, with what it was doing in front of the message.
absl::Status worker_error(const WorkerEntry& w, const grpc::Status& s, const std::string& doing);

}  // namespace freekv
