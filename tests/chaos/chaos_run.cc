// The chaos run: clients keep sessions going through the coordinator, across two workers that share
// one kvstore, while faults land at random times — a worker killed (-9) and started again, a worker
// drained (SIGTERM) and started again, the kvstore killed (-9) and started again on its pool, a worker
// frozen (SIGSTOP) past its heartbeats and resumed. Faults come in shuffled rounds of the four kinds,
// so every kind lands once per round.
//
// A client's session: a few turns, each sending its whole view so far (what it sent and received) plus
// new token ids as the session's context (prompt_is_context), greedy with end-of-sequence ignored;
// after a failed turn the next one resumes from that view, then the session is closed.
//
// Invariants, each violation recorded with what was seen (the run exits 1 when there is one):
//  1. A stream ends with all its tokens, or with a code the API documents for a failing service:
//     UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION (a session still settling
//     its interrupted turn). Anything else (INVALID_ARGUMENT, NOT_FOUND, INTERNAL, ...) is a violation:
//     the requests are valid and only their own client closes a session.
//  2. After every successful turn the session's stored token ids (the kvstore's GetSession) are exactly
//     what its client sent and received: none lost, none doubled.
//  3. A turn that resumed a session after a failure generates what an uninterrupted run does: the
//     reference engine's greedy continuation of the same context (tests/integration/greedy_reference.h),
//     checked after the faults stop; so is every 8th other turn, up to 1000 of them.
//  4. Nothing exits but the process a fault stopped (a drained worker exits 0), two workers are ready
//     again within 30 s of every fault, and a one-off request is served within 30 s.
//  5. Once every session is closed the pool's blocks in use are back to their number at the start.
//  6. Memory stays bounded: the coordinator's and the kvstore's resident memory at the end is within
//     1.5× + 64 MiB of what it was once the first faults had landed (workers restart, so theirs is
//     reported, not checked).
//
// The faults go on past --seconds until a whole round has landed.
//
//   chaos_run --seconds 1800 --clients 4 --out bench/results/chaos-....json
#include <glog/logging.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flag_util.h"
#include "common/grpc_util.h"
#include "freekv/v1/generation.grpc.pb.h"
#include "freekv/v1/kvstore.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/greedy_reference.h"
#include "tools/run_info.h"
#include "tools/service_stack.h"

ABSL_FLAG(std::string, model, FREEKV_TEST_MODEL_DIR, "Model directory the workers serve.");
ABSL_FLAG(double, seconds, 60, "How long faults land and clients run.");
ABSL_FLAG(int32_t, clients, 4, "Clients, each keeping one session going at a time.");
ABSL_FLAG(double, fault_gap_min, 4, "Shortest pause between two faults (seconds).");
ABSL_FLAG(double, fault_gap_max, 10, "Longest pause between two faults (seconds).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the faults' times and kinds and the clients' turns.");
ABSL_FLAG(std::string, out, "", "Write the JSON here (default: print it).");

namespace freekv {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWorkers = 2;
constexpr int kHeartbeatMs = 500;  // the coordinator marks a worker dead after three silent intervals
constexpr int64_t kMaxUninterruptedToVerify = 1000;  // every resumed turn is verified, these at most of the others

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string code_name(grpc::StatusCode code) { return absl::StatusCodeToString(static_cast<absl::StatusCode>(code)); }

// What every thread of the run reports into.
class Record {
 public:
  void violation(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    LOG(ERROR) << "violation: " << what;
    violations_.push_back(what);
  }
  void count(const std::string& what, int64_t n = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    counts_[what] += n;
  }
  int64_t violations() {
    std::lock_guard<std::mutex> lock(mu_);
    return int64_t(violations_.size());
  }
  void write(nlohmann::json* j) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, v] : counts_) (*j)["counts"][k] = v;
    (*j)["violations"] = violations_.size();
    (*j)["violation_details"] = violations_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> violations_;
  std::map<std::string, int64_t> counts_;
};

// A turn whose output is compared with the reference engine's once the faults stop.
struct TurnToVerify {
  std::vector<int32_t> context;
  std::vector<int32_t> tokens;
  bool resumed = false;  // the session's previous turn failed
};

class ChaosRun {
 public:
  ChaosRun(ServiceStack* stack, uint64_t seed) : stack_(stack), rng_(seed) {
    generation_ = v1::Generation::NewStub(make_channel(stack->coordinator_address()));
    kvstore_ = v1::KvStore::NewStub(make_channel("unix:" + stack->kvstore_socket()));
  }

  Record& record() { return record_; }
  std::vector<TurnToVerify>& turns_to_verify() { return to_verify_; }

  absl::StatusOr<int64_t> blocks_in_use() {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline_in(5000));
    v1::GetPoolStatsResponse resp;
    grpc::Status s = kvstore_->GetPoolStats(&ctx, v1::GetPoolStatsRequest(), &resp);
    if (!s.ok()) return from_grpc(s);
    return int64_t(resp.stats().blocks_used());
  }

  // One client's sessions until `stop`.
  void client(int c, uint64_t seed, const std::atomic<bool>& stop) {
    std::mt19937_64 rng(seed);
    for (int n = 0; !stop.load(); ++n) {
      const std::string session = absl::StrCat("chaos-", c, "-", n);
      if (!create_session(session)) continue;
      std::vector<int32_t> view;
      bool resumed = false;
      const int turns = std::uniform_int_distribution<int>(2, 6)(rng);
      for (int t = 0; t < turns && !stop.load(); ++t) {
        std::vector<int32_t> context = view;
        const int fresh = std::uniform_int_distribution<int>(t == 0 ? 16 : 4, t == 0 ? 96 : 24)(rng);
        for (int i = 0; i < fresh; ++i) context.push_back(std::uniform_int_distribution<int32_t>(5, 2000)(rng));
        const int max_tokens = std::uniform_int_distribution<int>(8, 40)(rng);
        std::vector<int32_t> got;
        const grpc::Status s = turn(session, context, max_tokens, &got);
        view = context;
        view.insert(view.end(), got.begin(), got.end());
        record_.count(absl::StrCat("turns_", code_name(s.error_code())));
        if (!s.ok()) {
          if (!documented_failure(s.error_code())) {
            record_.violation(absl::StrCat("session ", session, " turn ", t, ": ", code_name(s.error_code()), ": ",
                                           s.error_message()));
          }
          resumed = true;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        if (int(got.size()) != max_tokens) {
          record_.violation(absl::StrCat("session ", session, " turn ", t, " succeeded with ", got.size(), " tokens of ",
                                         max_tokens));
        }
        check_stored(session, view);
        if (resumed || ++turns_seen_ % 8 == 0) {
          std::lock_guard<std::mutex> lock(mu_);
          if (resumed || uninterrupted_to_verify_ < kMaxUninterruptedToVerify) {
            to_verify_.push_back({context, got, resumed});
            uninterrupted_to_verify_ += resumed ? 0 : 1;
          }
        }
        if (resumed) record_.count("resumed_turns");
        resumed = false;
      }
      close_session(session);
      record_.count("sessions");
    }
  }

  // Faults in shuffled rounds of the four kinds until `stop`, and at least one whole round; each
  // followed by its checks. Returns once `release` is set: the processes it started get SIGTERM when
  // this thread ends (tools/service_stack.h).
  void faults(double gap_min, double gap_max, const std::atomic<bool>& stop, const std::atomic<bool>& release) {
    const std::vector<std::string> kinds = {"worker_kill9", "worker_sigterm", "kvstore_kill9", "worker_sigstop"};
    std::vector<std::string> round;
    int rounds_done = 0;
    while (!(stop.load() && rounds_done > 0)) {
      const double gap = std::uniform_real_distribution<double>(gap_min, gap_max)(rng_);
      std::this_thread::sleep_for(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap)));
      if (round.empty()) {
        round = kinds;
        std::shuffle(round.begin(), round.end(), rng_);
      }
      const std::string kind = round.back();
      round.pop_back();
      if (round.empty()) ++rounds_done;
      const auto start = Clock::now();
      inject(kind);
      record_.count("faults_" + kind);
      record_.count("faults");
      const absl::Status ready = stack_->wait_for_ready_workers(kWorkers, std::chrono::seconds(30));
      if (!ready.ok()) record_.violation(absl::StrCat("after ", kind, ": ", ready.message()));
      probe(kind);
      check_nothing_else_exited(kind);
      const double recovery = seconds_since(start);
      std::lock_guard<std::mutex> lock(mu_);
      max_recovery_[kind] = std::max(max_recovery_[kind], recovery);
    }
    faults_done_.store(true);
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  bool faults_done() const { return faults_done_.load(); }

  std::map<std::string, double> max_recovery() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_recovery_;
  }

  // The resident memory of every process now.
  std::map<std::string, int64_t> memory() {
    std::lock_guard<std::mutex> lock(stack_mu_);
    std::map<std::string, int64_t> m;
    m["coordinator"] = resident_bytes(stack_->coordinator().pid());
    m["kvstore"] = resident_bytes(stack_->kvstore().pid());
    for (size_t i = 0; i < stack_->workers().size(); ++i) {
      m[absl::StrCat("worker_slot", i)] = resident_bytes(stack_->workers()[i]->pid());
    }
    return m;
  }

 private:
  static bool documented_failure(grpc::StatusCode code) {
    return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
           code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::FAILED_PRECONDITION;
  }

  // Calls `call` until it answers something other than a documented failure, for up to 30 s.
  template <typename F>
  grpc::Status with_retries(F&& call) {
    const auto until = Clock::now() + std::chrono::seconds(30);
    grpc::Status s;
    do {
      s = call();
      if (s.ok() || !documented_failure(s.error_code())) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    } while (Clock::now() < until);
    return s;
  }

  // Invariant 4's other half: the service answers again. One-off requests (each a private kvstore
  // session, so they need the workers attached to the kvstore) must succeed within 30 s.
  void probe(const std::string& kind) {
    std::vector<int32_t> got;
    grpc::Status s = with_retries([&] {
      got.clear();
      return turn("", {11, 12, 13, 14, 15, 16, 17, 18}, 4, &got);
    });
    if (!s.ok()) {
      record_.violation(absl::StrCat("after ", kind, " the service did not serve a request within 30 s: ", code_name(s.error_code()),
                                     ": ", s.error_message()));
    }
  }

  bool create_session(const std::string& id) {
    bool retried = false;
    grpc::Status s = with_retries([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline_in(10000));
      v1::CreateSessionRequest req;
      req.set_session_id(id);
      v1::CreateSessionResponse resp;
      grpc::Status r = generation_->CreateSession(&ctx, req, &resp);
      // A retry after a create that reached the kvstore but not its caller finds the session there.
      if (retried && r.error_code() == grpc::StatusCode::ALREADY_EXISTS) return grpc::Status::OK;
      retried = true;
      return r;
    });
    record_.count(absl::StrCat("creates_", code_name(s.error_code())));
    if (!s.ok()) {
      if (!documented_failure(s.error_code())) {
        record_.violation(absl::StrCat("CreateSession ", id, ": ", code_name(s.error_code()), ": ", s.error_message()));
      }
      return false;
    }
    return true;
  }

  grpc::Status turn(const std::string& session, const std::vector<int32_t>& context, int max_tokens,
                    std::vector<int32_t>* got) {
    v1::GenerateRequest req;
    req.set_session_id(session);
    req.mutable_prompt_ids()->mutable_ids()->Add(context.begin(), context.end());
    req.set_prompt_is_context(!session.empty());
    req.set_max_tokens(max_tokens);
    req.set_ignore_eos(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline_in(60000));
    auto reader = generation_->Generate(&ctx, req);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      if (msg.has_chunk()) got->insert(got->end(), msg.chunk().token_ids().begin(), msg.chunk().token_ids().end());
    }
    return reader->Finish();
  }

  // Invariant 2. The kvstore may be restarting: asked again for up to 30 s.
  void check_stored(const std::string& session, const std::vector<int32_t>& view) {
    v1::GetSessionResponse resp;
    grpc::Status s = with_retries([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline_in(5000));
      v1::GetSessionRequest req;
      req.set_session_id(session);
      req.set_include_token_ids(true);
      return kvstore_->GetSession(&ctx, req, &resp);
    });
    if (!s.ok()) {
      record_.violation(absl::StrCat("session ", session, ": the kvstore did not answer GetSession within 30 s: ",
                                     s.error_message()));
      return;
    }
    record_.count("stored_id_checks");
    const auto& ids = resp.session().token_ids();
    if (std::vector<int32_t>(ids.begin(), ids.end()) == view) return;
    size_t i = 0;
    while (i < view.size() && i < size_t(ids.size()) && view[i] == ids[int(i)]) ++i;
    record_.violation(absl::StrCat("session ", session, " stores ", ids.size(), " token ids, its client holds ", view.size(),
                                   "; they first differ at ", i));
  }

  void close_session(const std::string& id) {
    grpc::Status s = with_retries([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline_in(10000));
      v1::CloseGenerationSessionRequest req;
      req.set_session_id(id);
      v1::CloseGenerationSessionResponse resp;
      return generation_->CloseSession(&ctx, req, &resp);
    });
    record_.count(absl::StrCat("closes_", code_name(s.error_code())));
    if (!s.ok()) record_.violation(absl::StrCat("CloseSession ", id, ": ", code_name(s.error_code()), ": ", s.error_message()));
  }

  void inject(const std::string& kind) {
    std::unique_lock<std::mutex> lock(stack_mu_);
    auto& workers = stack_->workers();
    if (kind == "kvstore_kill9") {
      victim_ = stack_->kvstore().pid();
      const absl::Status s = stack_->restart_kvstore(SIGKILL);
      if (!s.ok()) record_.violation(absl::StrCat("the kvstore did not start again: ", s.message()));
      return;
    }
    const size_t i = std::uniform_int_distribution<size_t>(0, workers.size() - 1)(rng_);
    ChildProcess& w = *workers[i];
    victim_ = w.pid();
    if (kind == "worker_sigstop") {
      w.signal(SIGSTOP);
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(4 * kHeartbeatMs + 1000));
      lock.lock();
      w.signal(SIGCONT);
      return;
    }
    w.signal(kind == "worker_kill9" ? SIGKILL : SIGTERM);
    int status = 0;
    const auto until = Clock::now() + std::chrono::seconds(20);
    while (w.running(&status) && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (kind == "worker_sigterm" && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      record_.violation(absl::StrCat("a drained worker did not exit 0 (wait status ", status, "); see ", w.log_path()));
    }
    w.stop(std::chrono::seconds(1));  // reaps it (SIGKILL when the drain hung)
    workers.erase(workers.begin() + long(i));
    // Started again, as systemd or Kubernetes would.
    auto added = stack_->add_worker();
    if (!added.ok()) record_.violation(absl::StrCat("a worker did not start again: ", added.status().message()));
  }

  // Invariant 4: every process but the fault's victim still runs.
  void check_nothing_else_exited(const std::string& kind) {
    std::lock_guard<std::mutex> lock(stack_mu_);
    if (ChildProcess* gone = stack_->exited_child(); gone != nullptr && gone->pid() != victim_) {
      record_.violation(absl::StrCat("after ", kind, ": ", gone->name(), " exited; its log ends: ", gone->log_tail(600)));
    }
  }

  ServiceStack* stack_;
  std::mt19937_64 rng_;  // the fault thread's
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::KvStore::Stub> kvstore_;
  Record record_;
  std::mutex mu_;          // to_verify_, max_recovery_
  std::mutex stack_mu_;    // the stack's process list
  std::vector<TurnToVerify> to_verify_;
  std::map<std::string, double> max_recovery_;
  std::atomic<int64_t> turns_seen_{0};
  int64_t uninterrupted_to_verify_ = 0;
  std::atomic<bool> faults_done_{false};
  pid_t victim_ = -1;
};

// Invariant 3, after the faults: each recorded turn against the reference engine.
void verify_turns(ServiceStack& stack, const std::string& model, std::vector<TurnToVerify>& turns, Record& record) {
  EngineOptions o;
  o.retrieval = RetrievalConfig();
  o.retrieval.policy = PolicyKind::kFreekv;
  o.retrieval.budget = 2048;
  o.retrieval.sink = 512;
  o.retrieval.recent = 512;
  o.kvstore_socket = stack.kvstore_socket();
  o.kv_memory = 256ull << 20;
  o.threads = 2;
  auto engine = Engine::load(model, o);
  if (!engine.ok()) {
    record.violation(absl::StrCat("the reference engine did not load: ", engine.status().message()));
    return;
  }
  for (const TurnToVerify& t : turns) {
    auto expected = testing::greedy_tokens(**engine, t.context, int(t.tokens.size()));
    if (!expected.ok()) {
      record.violation(absl::StrCat("the reference engine failed: ", expected.status().message()));
      continue;
    }
    const testing::GreedyComparison c = testing::compare_greedy(**engine, t.context, *expected, t.tokens);
    record.count(t.resumed ? "verified_resumed_turns" : "verified_other_turns");
    if (!c.detail.empty() && c.same) record.count("verified_with_a_tie");
    if (!c.same) {
      record.violation(absl::StrCat(t.resumed ? "a resumed" : "an uninterrupted", " turn (context ", t.context.size(),
                                    " tokens) differs from the reference: ", c.detail));
    }
  }
}

int run() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const std::string model = absl::GetFlag(FLAGS_model);
  StackOptions so;
  so.model = model;
  so.run_dir = absl::StrCat("/tmp/freekv-chaos-", getpid());
  so.pool_size = "512MiB";
  so.heartbeat_interval_ms = kHeartbeatMs;
  // Budget over every context of the run: each turn's output is a function of its tokens alone, so a
  // resumed turn can be compared with an uninterrupted one; pages still go through the kvstore.
  so.worker_flags = {"--policy=freekv", "--budget=2048", "--sink=512", "--recent=512", "--threads=1", "--max_batch=4",
                     "--drain_grace_ms=3000", "--kv_memory=512MiB"};
  auto stack = ServiceStack::start(so);
  if (!stack.ok()) return std::fprintf(stderr, "chaos_run: %s\n", std::string(stack.status().message()).c_str()), 1;
  if (auto second = (*stack)->add_worker(); !second.ok()) {
    return std::fprintf(stderr, "chaos_run: %s\n", std::string(second.status().message()).c_str()), 1;
  }
  ChaosRun chaos(stack->get(), absl::GetFlag(FLAGS_seed));
  auto baseline = chaos.blocks_in_use();
  if (!baseline.ok()) return std::fprintf(stderr, "chaos_run: %s\n", std::string(baseline.status().message()).c_str()), 1;

  nlohmann::json j;
  j["benchmark"] = "chaos";
  j["machine"] = machine_description();
  j["commit"] = git_commit();
  j["config"] = {{"model", model}, {"seconds", seconds}, {"clients", absl::GetFlag(FLAGS_clients)}, {"workers", kWorkers},
                 {"fault_gap_s", {absl::GetFlag(FLAGS_fault_gap_min), absl::GetFlag(FLAGS_fault_gap_max)}},
                 {"heartbeat_ms", kHeartbeatMs}, {"seed", absl::GetFlag(FLAGS_seed)},
                 {"worker_flags", so.worker_flags}};
  const auto start = Clock::now();
  std::atomic<bool> stop_faults{false}, stop_clients{false}, release_processes{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < absl::GetFlag(FLAGS_clients); ++c) {
    threads.emplace_back([&, c] { chaos.client(c, absl::GetFlag(FLAGS_seed) * 1000 + uint64_t(c), stop_clients); });
  }
  std::thread fault_thread([&] {
    chaos.faults(absl::GetFlag(FLAGS_fault_gap_min), absl::GetFlag(FLAGS_fault_gap_max), stop_faults, release_processes);
  });
  // Memory: sampled every 2 s; the reference point is taken a fifth into the run (after the first faults).
  std::map<std::string, int64_t> reference_memory, peak_memory;
  while (seconds_since(start) < seconds) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const auto m = chaos.memory();
    for (const auto& [k, v] : m) peak_memory[k] = std::max(peak_memory[k], v);
    if (reference_memory.empty() && seconds_since(start) >= seconds / 5) reference_memory = m;
  }
  stop_faults.store(true);
  while (!chaos.faults_done()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop_clients.store(true);  // clients finish their turn in flight and close their session
  for (auto& t : threads) t.join();
  Record& record = chaos.record();
  const auto end_memory = chaos.memory();
  for (const std::string name : {"coordinator", "kvstore"}) {
    const int64_t ref = reference_memory.count(name) ? reference_memory[name] : end_memory.at(name);
    if (double(end_memory.at(name)) > 1.5 * double(ref) + double(64 << 20)) {
      record.violation(absl::StrCat(name, " resident memory grew from ", ref, " to ", end_memory.at(name), " bytes"));
    }
  }
  j["memory_bytes"] = {{"reference", reference_memory}, {"peak", peak_memory}, {"end", end_memory}};

  // Invariant 5, then 3.
  absl::StatusOr<int64_t> used = chaos.blocks_in_use();
  for (int i = 0; i < 100 && (!used.ok() || *used != *baseline); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    used = chaos.blocks_in_use();
  }
  j["pool_blocks_in_use"] = {{"start", *baseline}, {"end", used.ok() ? *used : -1}};
  if (!used.ok() || *used != *baseline) {
    record.violation(absl::StrCat("pool blocks in use: ", *baseline, " at the start, ",
                                  used.ok() ? absl::StrCat(*used) : std::string(used.status().message()),
                                  " once every session was closed"));
  }
  verify_turns(**stack, model, chaos.turns_to_verify(), record);
  j["max_recovery_s"] = chaos.max_recovery();
  j["elapsed_s"] = seconds_since(start);
  record.write(&j);
  const std::string text = j.dump(2);
  if (absl::GetFlag(FLAGS_out).empty()) std::printf("%s\n", text.c_str());
  else std::ofstream(absl::GetFlag(FLAGS_out)) << text << "\n";
  std::fprintf(stderr, "chaos_run: %.0f s, %lld faults, %lld sessions, %lld turns ok, %lld resumed; %lld violations\n",
               seconds, (long long)j["counts"].value("faults", 0), (long long)j["counts"].value("sessions", 0),
               (long long)j["counts"].value("turns_OK", 0), (long long)j["counts"].value("resumed_turns", 0),
               (long long)record.violations());
  (*stack)->stop();
  release_processes.store(true);
  fault_thread.join();
  if (record.violations() > 0) {
    std::fprintf(stderr, "chaos_run: the processes' logs are in %s\n", so.run_dir.c_str());
    return 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(so.run_dir, ec);
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  freekv::parse_service_flags(argc, argv, "chaos run: sessions across two workers and one kvstore under random faults",
                              {"tests/chaos/chaos_run.cc"});
  return freekv::run();
}
