#include "worker/engine/scheduler.h"

#include <algorithm>
#include <future>

namespace freekv {
namespace {

double seconds(Job::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

// ---- Job ----

bool Job::wait(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, until, [&] { return done_ || !ids_.empty() || !text_.empty(); });
}

void Job::take(std::vector<int32_t>* ids, std::string* text) {
  std::lock_guard<std::mutex> lock(mu_);
  ids->swap(ids_);
  ids_.clear();
  text->swap(text_);
  text_.clear();
}

bool Job::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void Job::cancel(absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_.load()) return;
    cancel_status_ = std::move(why);
  }
  cancelled_.store(true);
}

void Job::publish(const std::vector<int32_t>& ids, const std::string& text) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    text_ += text;
  }
  cv_.notify_all();
}

void Job::complete(absl::StatusOr<GenerateResult> result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    result_ = std::move(result);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- Scheduler ----

// A request in the running batch (engine thread only).
struct Scheduler::Running {
  std::shared_ptr<Job> job;
  std::unique_ptr<ActiveRequest> active;
  int64_t prompt = 0;        // tokens to prefill (a resumed session's replay included)
  int64_t fed = 0;           // of them, fed so far
  size_t published = 0;     // generated ids handed to the job
  std::string text;          // text produced by the current accept()
  bool done = false;
  Job::Clock::time_point admitted;
  Job::Clock::time_point last_token;  // when the previous tokens were published
  RetrievalStats recall_seen;         // the sequence's recall counts already reported to the observer
};

Scheduler::Scheduler(Engine* engine, SchedulerOptions options) : engine_(engine), options_(options) {
  options_.max_batch = std::max(1, options_.max_batch);
  // A device that holds KV for fewer sequences than the batch has seats seats no more: the others wait
  // in the queue for a region instead of failing in a step.
  if (const int64_t cap = engine_->backend().max_sequences(); cap > 0 && cap < options_.max_batch) {
    options_.max_batch = int(cap);
  }
  max_step_tokens_ = options_.max_step_tokens > 0 ? options_.max_step_tokens
                                                  : engine_->options().prefill_chunk + options_.max_batch;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::StatusOr<std::shared_ptr<Job>> Scheduler::submit(GenerateRequest request) {
  std::shared_ptr<Job> job(new Job(std::move(request)));
  {
    std::unique_lock<std::mutex> lock(mu_);
    const std::string& session = job->request().session_id;
    if (!session.empty()) {
      // A turn whose client gave up is dropped before the engine's next step: wait for that.
      cv_.wait_for(lock, std::chrono::seconds(1), [&] {
        auto it = busy_sessions_.find(session);
        return stopping_ || it == busy_sessions_.end() || !it->second->cancelled_.load();
      });
    }
    if (stopping_ || draining_) return absl::UnavailableError("this worker is shutting down; send the request to another worker");
    if (int(queue_.size()) >= options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrCat("the worker's queue is full (", queue_.size(),
                                                       " requests waiting); retry later or add workers"));
    }
    if (!session.empty()) {
      if (busy_sessions_.count(session) != 0) {
        return absl::FailedPreconditionError(absl::StrCat("session '", session,
                                                          "' is already generating; wait for that request to end or cancel it"));
      }
      busy_sessions_[session] = job;
    }
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

void Scheduler::run_on_engine(const std::function<void(Engine&)>& fn) {
  std::promise<void> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the engine thread is gone or going
    tasks_.push_back([&] {
      fn(*engine_);
      done.set_value();
    });
  }
  cv_.notify_all();
  done.get_future().wait();
}

bool Scheduler::session_busy(const std::string& session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_sessions_.count(session_id) != 0;
}

std::optional<SessionResidency> Scheduler::residency(const std::string& session_id) {
  std::optional<SessionResidency> out;
  run_on_engine([&](Engine&) {
    for (const auto& r : running_) {
      if (r->done || r->active->request().session_id != session_id) continue;
      TieredKv& kv = r->active->sequence().kv();
      const KvGeometry& g = kv.geometry();
      SessionResidency res;
      res.page_bytes = int64_t(g.block_bytes());
      res.chunk_bytes = int64_t(g.chunk_bytes());
      res.tokens = kv.n_tokens();
      res.kv_bytes = kv.blocks_held() * res.page_bytes;
      res.kv_peak_bytes = kv.peak_blocks_held() * res.page_bytes;
      res.digest_bytes = kv.digest_bytes();
      const int64_t pages = (kv.n_tokens() + g.page_tokens - 1) / g.page_tokens;
      for (int64_t l = 0; l < g.n_layers; ++l) {
        SessionResidency::Layer layer;
        for (int64_t p = 0; p < pages; ++p) layer.local_pages += kv.resident(l, p) ? 1 : 0;
        if (kv.selected_slots() > 0) {
          for (int64_t h = 0; h < g.n_kv_heads; ++h) {
            for (int32_t page : kv.slot_pages(l, h)) layer.selected_chunks += page >= 0 ? 1 : 0;
          }
        }
        res.layers.push_back(layer);
      }
      out = std::move(res);
    }
  });
  return out;
}

SchedulerLoad Scheduler::load() const {
  SchedulerLoad l;
  {
    std::lock_guard<std::mutex> lock(mu_);
    l.queued = int(queue_.size());
  }
  l.active = active_.load();
  l.steps = steps_.load();
  l.generated_tokens = generated_.load();
  l.prefill_tokens = prefilled_.load();
  return l;
}

void Scheduler::drain(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() && active_.load() == 0) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  run_on_engine([&](Engine&) {
    for (auto& r : running_) r->job->cancel(absl::UnavailableError("the worker stopped before this request finished; "
                                                                   "its session keeps what was generated so far"));
  });
}

void Scheduler::loop() {
  while (true) {
    std::vector<std::shared_ptr<Job>> admitted;
    std::deque<std::function<void()>> tasks;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !tasks_.empty() || !running_.empty(); });
      stopping = stopping_;
      tasks.swap(tasks_);
      while (!stopping && !queue_.empty() && int(running_.size() + admitted.size()) < options_.max_batch) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (auto& t : tasks) t();
    if (stopping) {
      for (auto& r : running_) finish(r.get(), absl::UnavailableError("the worker is shutting down"));
      remove_finished();
      std::deque<std::shared_ptr<Job>> left;
      {
        std::lock_guard<std::mutex> lock(mu_);
        left.swap(queue_);
        busy_sessions_.clear();
        for (auto& t : tasks_) t();  // nobody may wait forever on a task
        tasks_.clear();
      }
      for (auto& j : left) complete(*j, absl::UnavailableError("the worker is shutting down"));
      return;
    }
    for (auto& job : admitted) admit(std::move(job));
    // Cancelled requests leave before the step.
    for (auto& r : running_) {
      if (!r->done && r->job->cancelled_.load()) {
        absl::Status why;
        {
          std::lock_guard<std::mutex> lock(r->job->mu_);
          why = r->job->cancel_status_;
        }
        finish(r.get(), why);
      }
    }
    remove_finished();
    if (!running_.empty()) step();
  }
}

void Scheduler::admit(std::shared_ptr<Job> job) {
  if (job->cancelled_.load()) {
    absl::Status why;
    {
      std::lock_guard<std::mutex> lock(job->mu_);
      why = job->cancel_status_;
    }
    if (!job->request().session_id.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      busy_sessions_.erase(job->request().session_id);
    }
    cv_.notify_all();  // a turn waiting for this session (submit)
    complete(*job, why);
    return;
  }
  auto r = std::make_unique<Running>();
  r->job = job;
  r->admitted = Job::Clock::now();
  job->queue_seconds_ = seconds(r->admitted - job->submitted_);
  Running* raw = r.get();
  auto active = engine_->start_request(job->request(), [raw](std::string_view piece) { raw->text.append(piece); });
  if (!active.ok()) {
    if (!job->request().session_id.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      busy_sessions_.erase(job->request().session_id);
    }
    cv_.notify_all();  // a turn waiting for this session (submit)
    complete(*job, active.status());
    return;
  }
  r->active = std::move(*active);
  r->prompt = int64_t(r->active->request().prompt.size());
  // What is fed beyond this turn's new prompt tokens is the session's replay.
  job->replayed_ = r->prompt - r->active->result().stats.prompt_tokens;
  running_.push_back(std::move(r));
  active_.store(int(running_.size()));
}

void Scheduler::step() {
  // Decoding requests first (one row each), then prefill chunks in admission order within the row bound.
  const int64_t chunk = engine_->options().prefill_chunk;
  std::vector<Running*> batch;
  int64_t rows = 0;
  for (auto& r : running_) {
    if (r->fed >= r->prompt) {
      batch.push_back(r.get());
      rows += 1;
    }
  }
  bool any_prefill = false;
  for (auto& r : running_) {
    if (r->fed >= r->prompt) continue;
    const int64_t n = std::min(chunk, r->prompt - r->fed);
    if (any_prefill && rows + n > max_step_tokens_) continue;
    batch.push_back(r.get());
    rows += n;
    any_prefill = true;
  }
  std::vector<StepInput> inputs;
  inputs.reserve(batch.size());
  for (Running* r : batch) inputs.push_back(r->active->next_input());
  const Job::Clock::time_point started = Job::Clock::now();
  std::vector<absl::Status> failed;
  absl::Status s = engine_->step(inputs, &logits_, &failed);
  steps_.fetch_add(1);
  if (options_.observer != nullptr) {
    RetrievalStats recall;
    int64_t prefill_rows = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const RetrievalStats total = batch[i]->active->sequence().total_stats();
      recall += total - batch[i]->recall_seen;
      batch[i]->recall_seen = total;
      if (batch[i]->fed < batch[i]->prompt) prefill_rows += inputs[i].n_tokens;
    }
    options_.observer->on_step(int(batch.size()), rows, prefill_rows, seconds(Job::Clock::now() - started), recall);
  }
  if (!s.ok()) {
    // Nothing of the step was written. The pool cannot hold its tokens: the youngest request gives its
    // pages back and the others step again. Any other failure (a device's) is that request's answer,
    // as it is.
    finish(batch.back(),
           s.code() == absl::StatusCode::kResourceExhausted
               ? absl::ResourceExhaustedError(absl::StrCat(
                     "the worker's KV memory is full (", std::string(s.message()),
                     "); retry later, shorten the request, or start the worker with more --kv-memory"))
               : s);
    remove_finished();
    return;
  }
  const int64_t vocab = engine_->weights().config.vocab;
  int64_t row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Running* r = batch[i];
    if (!failed[i].ok()) {  // dropped out of the step on its own: only its request fails
      finish(r, failed[i]);
      row += inputs[i].all_logits ? inputs[i].n_tokens : 1;
      continue;
    }
    const bool prefill = r->fed < r->prompt;
    if (prefill) {
      r->fed += inputs[i].n_tokens;
      prefilled_.fetch_add(inputs[i].n_tokens);
    }
    r->active->accept(logits_.data() + row * vocab);
    row += inputs[i].all_logits ? inputs[i].n_tokens : 1;
    const std::vector<int32_t>& tokens = r->active->result().tokens;
    if (tokens.size() > r->published || !r->text.empty()) {
      const Job::Clock::time_point now = Job::Clock::now();
      std::vector<int32_t> fresh(tokens.begin() + long(r->published), tokens.end());
      const bool first = r->published == 0;
      if (first && !fresh.empty()) r->job->first_token_seconds_ = seconds(now - r->admitted);
      if (!fresh.empty() && options_.observer != nullptr) {
        options_.observer->on_tokens(int64_t(fresh.size()), seconds(now - (first ? r->job->submitted_ : r->last_token)), first);
      }
      if (!fresh.empty()) r->last_token = now;
      generated_.fetch_add(int64_t(fresh.size()));
      r->published = tokens.size();
      r->job->publish(fresh, r->text);
      r->text.clear();
    }
    if (r->active->finished()) finish(r, absl::OkStatus());
  }
  remove_finished();
}

void Scheduler::finish(Running* r, absl::Status failure) {
  if (r->done) return;
  r->done = true;
  Engine::Finished finished = engine_->finish_request(std::move(r->active), failure);
  absl::StatusOr<GenerateResult> result = std::move(finished.result);
  r->job->session_tokens_ = finished.session_tokens;
  if (!r->text.empty()) {
    r->job->publish({}, r->text);
    r->text.clear();
  }
  if (!r->job->request().session_id.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    busy_sessions_.erase(r->job->request().session_id);
  }
  cv_.notify_all();  // a turn waiting for this session (submit)
  complete(*r->job, std::move(result));
}

void Scheduler::complete(Job& job, absl::StatusOr<GenerateResult> result) {
  if (options_.observer != nullptr) options_.observer->on_finish(result.status());
  job.complete(std::move(result));
}

void Scheduler::remove_finished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }), running_.end());
  active_.store(int(running_.size()));
}

}  // namespace freekv
