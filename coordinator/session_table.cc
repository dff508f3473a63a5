#include "coordinator/session_table.h"

#include <chrono>

namespace freekv {

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

absl::Status SessionTable::add(SessionRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.count(record.id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("session '", record.id, "' already exists; continue it or pick another id"));
  }
  const std::string id = record.id;
  sessions_.emplace(id, std::move(record));
  return absl::OkStatus();
}

std::optional<SessionRecord> SessionTable::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second;
}

void SessionTable::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(id);
  running_.erase(id);
  ended_.notify_all();
}

size_t SessionTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

std::vector<SessionRecord> SessionTable::list() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SessionRecord> out;
  for (const auto& [id, r] : sessions_) out.push_back(r);
  return out;
}

absl::Status SessionTable::begin_turn(const std::string& id, std::function<bool()> abandoned) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("unknown session '", id, "'"));
    if (!it->second.generating) {
      it->second.generating = true;
      running_[id] = std::move(abandoned);
      return absl::OkStatus();
    }
    auto r = running_.find(id);
    const bool winding_down = r != running_.end() && r->second && r->second();
    if (!winding_down || std::chrono::steady_clock::now() >= until) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session '", id, "' is already generating (one request per session at a time); wait for it to end or cancel it"));
    }
    ended_.wait_for(lock, std::chrono::milliseconds(10));
  }
}

void SessionTable::end_turn(const std::string& id, const v1::GenerateDone* done) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  SessionRecord& r = it->second;
  r.generating = false;
  running_.erase(id);
  ended_.notify_all();
  r.last_use_unix_ms = now_unix_ms();
  if (done == nullptr) return;
  r.turns += 1;
  r.tokens = done->usage().session_tokens();
  r.prompt_tokens += done->usage().prompt_tokens();
  r.reused_tokens += done->usage().reused_tokens();
  r.generated_tokens += done->usage().generated_tokens();
  const v1::RetrievalStats& s = done->retrieval();
  v1::RetrievalStats& t = r.retrieval;
  t.set_policy(s.policy());
  t.set_pages_recalled(t.pages_recalled() + s.pages_recalled());
  t.set_bytes_recalled(t.bytes_recalled() + s.bytes_recalled());
  t.set_sync_recalls(t.sync_recalls() + s.sync_recalls());
  t.set_async_recalls(t.async_recalls() + s.async_recalls());
  t.set_recall_wait_seconds(t.recall_wait_seconds() + s.recall_wait_seconds());
  t.set_correction_checks(t.correction_checks() + s.correction_checks());
  t.set_correction_triggers(t.correction_triggers() + s.correction_triggers());
  t.set_correction_rate(t.correction_checks() > 0 ? double(t.correction_triggers()) / double(t.correction_checks()) : 0.0);
  t.set_selection_steps(t.selection_steps() + s.selection_steps());
}

void SessionTable::set_worker(const std::string& id, const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end()) it->second.worker_id = worker_id;
}

}  // namespace freekv
