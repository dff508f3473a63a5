// The coordinator's sessions: where each one's KV lives (its kvstore), which worker serves its turns
// (affinity), whether a turn is running, and what its turns did (summed usage and retrieval).
//
// The KV itself, and so the truth about a session's existence and size, is in the kvstore; this table
// is the routing state. After a coordinator restart a session it does not know is adopted from the
// kvstore on first use (see GenerationService).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "freekv/v1/generation.pb.h"

namespace freekv {

struct SessionRecord {
  std::string id;
  std::string worker_id;        // affinity
  std::string kvstore_id;
  int64_t created_unix_ms = 0, last_use_unix_ms = 0;
  int64_t turns = 0;
  int64_t tokens = 0;           // stored in the kvstore, as of the last turn's end
  bool generating = false;
  int64_t prompt_tokens = 0, reused_tokens = 0, generated_tokens = 0;
  v1::RetrievalStats retrieval;  // summed over turns (correction_rate recomputed)
};

class SessionTable {
 public:
  // ALREADY_EXISTS when the id is taken.
  absl::Status add(SessionRecord record);
  std::optional<SessionRecord> find(const std::string& id);
  void remove(const std::string& id);
  std::vector<SessionRecord> list();
  size_t size();

  // Marks a turn as running; FAILED_PRECONDITION when one already runs, NOT_FOUND when unknown.
  // `abandoned` (optional, called under the table's lock until end_turn) tells whether the turn's
  // client has gone away: a new turn then waits (up to a few seconds) for that turn to wind down
  // instead of failing, since its client has stopped waiting for it.
  absl::Status begin_turn(const std::string& id, std::function<bool()> abandoned = nullptr);
  // Ends the running turn; done (when the turn succeeded) adds its usage and retrieval to the totals.
  void end_turn(const std::string& id, const v1::GenerateDone* done);
  void set_worker(const std::string& id, const std::string& worker_id);

 private:
  std::mutex mu_;
  std::condition_variable ended_;
  std::map<std::string, SessionRecord> sessions_;
  std::map<std::string, std::function<bool()>> running_;  // abandoned() of each running turn
};

int64_t now_unix_ms();

}  // namespace freekv
