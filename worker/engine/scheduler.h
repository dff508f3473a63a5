// Continuous batching: one engine thread owns the Engine and steps every running request together.
//
// Requests are submitted from any thread (the worker's gRPC handlers) and wait in a queue. Between two
// forward steps the engine thread admits queued requests while the batch has room (max_batch
// sequences), drops cancelled ones, and runs tasks posted with run_on_engine() (the Engine and its
// kvstore client are used by this thread only). A step takes one row from every decoding request and
// prefill chunks from prefilling ones, in admission order, while the rows stay within max_step_tokens
// (at least one chunk per step, so a prefill always progresses); so a long prompt's prefill runs
// alongside the decodes of the others instead of stalling them. A request that finishes leaves the
// batch at once; its seat goes to the next queued request at the next step.
//
// Cancellation (client gone, deadline passed): Job::cancel() marks the job; the engine thread drops it
// before the next step and calls Engine::finish_request(), which releases its local pages; a kept
// session keeps what was generated so far in the kvstore (its last sampled token included).
//
// A session has at most one request queued or running: a second one is FAILED_PRECONDITION, unless
// the first was cancelled, in which case the second waits (up to a second) until it is dropped.
// The worker's KV memory running out before a step fails the most recently admitted request of the
// step with RESOURCE_EXHAUSTED and the step runs again without it; any other failure of a whole step
// (a device's) fails that request with the backend's status as it is. A sequence that fails inside a step
// (a recall fails, the kvstore is full when its pages are offloaded) fails its own request only; the
// others keep their tokens, and its kept session is settled as Engine::finish_request says.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "worker/engine/generate.h"

namespace freekv {

// What the engine thread reports as it works (the worker's metrics). Called on the engine thread
// between steps: implementations must be cheap and must not block.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // One forward step: `sequences` in the batch, `rows` token rows of which `prefill_rows` were prompt
  // tokens, `seconds` of wall time, and the recall and correction counts the step's sequences added.
  virtual void on_step(int sequences, int64_t rows, int64_t prefill_rows, double seconds, const RetrievalStats& recall) = 0;
  // `tokens` newly sampled tokens of one request. With `first` they include its first token and
  // `seconds` counts from the request's arrival (queueing included); otherwise from its previous tokens.
  virtual void on_tokens(int64_t tokens, double seconds, bool first) = 0;
  // A request ended (finished, failed, cancelled or refused at admission) with this status.
  virtual void on_finish(const absl::Status& status) = 0;
};

struct SchedulerOptions {
  int max_batch = 4;             // sequences stepped together (at most the backend's max_sequences())
  int64_t max_step_tokens = 0;   // rows of one step; 0 = the engine's prefill chunk + max_batch
  int max_queue = 1024;          // waiting requests beyond which submit() is RESOURCE_EXHAUSTED
  SchedulerObserver* observer = nullptr;  // not owned; must outlive the scheduler
};

// One submitted request, shared by its submitter and the engine thread.
class Job {
 public:
  using Clock = std::chrono::steady_clock;

  // Waits until there are tokens to take, the job is done, or `until`; true unless it timed out.
  bool wait(Clock::time_point until);
  // Moves out the tokens and text produced since the last call.
  void take(std::vector<int32_t>* ids, std::string* text);
  bool done() const;
  // Valid once done(): the result, or why the request failed (CANCELLED after cancel()).
  const absl::StatusOr<GenerateResult>& result() const { return result_; }
  // Asks the engine thread to drop the request before its next step; `why` becomes its status.
  void cancel(absl::Status why);

  const GenerateRequest& request() const { return request_; }
  // Set when the engine admits the request (read after done()).
  int64_t replayed_tokens() const { return replayed_; }   // session tokens recomputed before the prompt
  int64_t session_tokens() const { return session_tokens_; }  // tokens the session holds after this turn
  double queue_seconds() const { return queue_seconds_; }
  double first_token_seconds() const { return first_token_seconds_; }  // admission to the first token

 private:
  friend class Scheduler;
  explicit Job(GenerateRequest r) : request_(std::move(r)), submitted_(Clock::now()) {}
  void publish(const std::vector<int32_t>& ids, const std::string& text);
  void complete(absl::StatusOr<GenerateResult> result);

  GenerateRequest request_;
  Clock::time_point submitted_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> ids_;
  std::string text_;
  bool done_ = false;
  absl::StatusOr<GenerateResult> result_ = absl::UnknownError("not finished");
  std::atomic<bool> cancelled_{false};
  absl::Status cancel_status_;  // guarded by mu_
  int64_t replayed_ = 0, session_tokens_ = 0;
  double queue_seconds_ = 0, first_token_seconds_ = 0;
};

// Worker-memory residency of a running session's sequence, per layer.
struct SessionResidency {
  struct Layer {
    int64_t local_pages = 0;      // pages resident in this worker's KV pool
    int64_t selected_chunks = 0;  // (KV head, page) chunks in the selected budget slots
  };
  std::vector<Layer> layers;
  int64_t page_bytes = 0;         // one page of one layer, all KV heads
  int64_t chunk_bytes = 0;        // one KV head's share of a page
  int64_t tokens = 0;             // tokens with KV in the sequence
  int64_t kv_bytes = 0;           // the worker's KV memory it holds now (pages, slots, a streaming group)
  int64_t kv_peak_bytes = 0;      // ... and the most it held at once
  int64_t digest_bytes = 0;       // page digests kept for selection
};

struct SchedulerLoad {
  int active = 0, queued = 0;
  int64_t steps = 0, generated_tokens = 0, prefill_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(Engine* engine, SchedulerOptions options);
  ~Scheduler();  // cancels what is queued or running, then joins the engine thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. FAILED_PRECONDITION when its session already has one queued or running;
  // RESOURCE_EXHAUSTED when the queue is full; UNAVAILABLE once stopping. Validation happens at
  // admission (the job completes with the engine's error).
  absl::StatusOr<std::shared_ptr<Job>> submit(GenerateRequest request);

  // Runs fn on the engine thread between two steps and waits for it.
  void run_on_engine(const std::function<void(Engine&)>& fn);

  bool session_busy(const std::string& session_id) const;
  // Residency of the session's running sequence, nullopt when none runs (computed between steps).
  std::optional<SessionResidency> residency(const std::string& session_id);
  SchedulerLoad load() const;

  // Stops admitting; returns once nothing is queued or running, or after `grace` (then cancels).
  void drain(std::chrono::milliseconds grace);

 private:
  struct Running;
  void loop();
  void admit(std::shared_ptr<Job> job);
  void step();
  void finish(Running* r, absl::Status failure);
  // Fails the inputs of a step that dropped out of it; the rest of the batch is unaffected.
  // Completes the job and tells the observer.
  void complete(Job& job, absl::StatusOr<GenerateResult> result);
  void remove_finished();

  Engine* engine_;
  SchedulerOptions options_;
  int64_t max_step_tokens_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::deque<std::function<void()>> tasks_;
  // Sessions with a request queued or running, and that request: a new turn waits briefly for one that
  // was cancelled (its client gave up) to be dropped, instead of being refused.
  std::map<std::string, std::shared_ptr<Job>> busy_sessions_;
  bool stopping_ = false, draining_ = false;

  // Engine-thread state.
  std::vector<std::unique_ptr<Running>> running_;
  std::vector<float> logits_;

  std::atomic<int> active_{0};
  std::atomic<int64_t> steps_{0}, generated_{0}, prefilled_{0};
  std::thread thread_;
};

}  // namespace freekv
