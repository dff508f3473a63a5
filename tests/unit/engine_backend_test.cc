// The engine's step backend seam (worker/engine/step_backend.h): with a device named, every step of
// Engine::generate and of the scheduler goes through the backend the factory made, each finished
// request releases exactly the sequence it stepped, the scheduler seats no more sequences than the
// backend holds, and the results are the CPU engine's. The stand-in
// device backend here is a second CPU forward pass that records what it is asked (the CUDA one is
// checked against the CPU on a GPU: tests/cuda/cuda_engine_test). Then the refusals.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>

#include "test_models.h"
#include "worker/engine/generate.h"
#include "worker/engine/scheduler.h"

namespace freekv {
namespace {

const TinyModel kModel = {"backend-gqa2", ModelArch::kLlama, 2, 128, 4, 2, 32, 128};

// What the backend was asked. A sequence's address may come back for a new sequence once released, so
// sequences are counted by lifetime: from the first step after a release (or ever) to the release.
struct Record {
  std::mutex mu;
  int steps = 0;
  int lifetimes = 0, releases = 0;
  std::set<const Sequence*> live;
  int64_t capacity = 0;  // the backend's max_sequences()
  size_t most_inputs = 0;
  int fail_step = 0;     // when > 0: that step (1-based) fails whole with `failure`, writing nothing
  absl::Status failure;
};

class RecordingBackend : public StepBackend {
 public:
  RecordingBackend(const ModelWeights& w, Record* record) : threads_(2), pass_(w, threads_), record_(record) {}
  absl::Status step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                    std::vector<absl::Status>* failed) override {
    std::lock_guard<std::mutex> lock(record_->mu);
    ++record_->steps;
    if (record_->steps == record_->fail_step) return record_->failure;
    record_->most_inputs = std::max(record_->most_inputs, inputs.size());
    for (const StepInput& in : inputs) record_->lifetimes += record_->live.insert(in.seq).second ? 1 : 0;
    return pass_.step(inputs, logits, failed);
  }
  void release(const Sequence* seq) override {
    std::lock_guard<std::mutex> lock(record_->mu);
    EXPECT_EQ(record_->live.erase(seq), 1u) << "released a sequence that never stepped, or twice";
    ++record_->releases;
  }
  int64_t max_sequences() const override { return record_->capacity; }
  std::string device() const override { return "recording"; }

 private:
  ThreadPool threads_;
  ForwardPass pass_;
  Record* record_;
};

EngineOptions options(Record* record) {
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = 16;
  o.prefill_chunk = 16;
  o.device.name = "recording:0";
  o.make_device_backend = [record](const ModelWeights& w, const EngineOptions&) -> absl::StatusOr<std::unique_ptr<StepBackend>> {
    return std::make_unique<RecordingBackend>(w, record);
  };
  return o;
}

GenerateRequest request(int prompt_tokens, int max_tokens, int salt) {
  GenerateRequest r;
  for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(int32_t((i * 37 + salt) % 250));
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

TEST(EngineBackend, GenerateStepsThroughTheDeviceBackendAndMatchesTheCpu) {
  Record record;
  auto device = Engine::load(tiny_model_dir(kModel), options(&record));
  ASSERT_TRUE(device.ok()) << device.status();
  EngineOptions cpu_options = options(nullptr);
  cpu_options.device = DeviceOptions{};
  auto cpu = Engine::load(tiny_model_dir(kModel), cpu_options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*device)->backend().device(), "recording");
  EXPECT_EQ((*cpu)->backend().device(), "cpu");
  const GenerateRequest r = request(40, 8, 5);  // three prefill steps, then seven decode steps
  auto got = (*device)->generate(r, nullptr);
  auto want = (*cpu)->generate(r, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(got->tokens, want->tokens);
  EXPECT_EQ(record.steps, 3 + 7);
  EXPECT_EQ(record.lifetimes, 1);
  EXPECT_EQ(record.releases, 1);
  EXPECT_TRUE(record.live.empty());
}

TEST(EngineBackend, SchedulerStepsThroughTheBackendAndReleasesEverySequence) {
  for (const int64_t capacity : {0, 1}) {
    Record record;
    record.capacity = capacity;
    auto engine = Engine::load(tiny_model_dir(kModel), options(&record));
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<std::shared_ptr<Job>> jobs;
    {
      SchedulerOptions so;
      so.max_batch = 2;  // three requests: the third waits for a seat
      Scheduler scheduler(engine->get(), so);
      for (int i = 0; i < 3; ++i) {
        auto job = scheduler.submit(request(20 + 15 * i, 4 + i, i));
        ASSERT_TRUE(job.ok()) << job.status();
        jobs.push_back(*job);
      }
      for (auto& job : jobs) {
        while (!job->done()) job->wait(Job::Clock::now() + std::chrono::milliseconds(50));
        ASSERT_TRUE(job->result().ok()) << job->result().status();
      }
    }
    std::lock_guard<std::mutex> lock(record.mu);
    EXPECT_EQ(record.lifetimes, 3);
    EXPECT_EQ(record.releases, 3);
    EXPECT_TRUE(record.live.empty());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(int64_t(jobs[size_t(i)]->result()->tokens.size()), 4 + i);
    // A backend holding one sequence gets one per step; otherwise the two seats are shared.
    EXPECT_EQ(record.most_inputs, capacity == 1 ? 1u : 2u) << "capacity " << capacity;
  }
}

// A step that fails whole (a device lost, not memory) answers the youngest request of the batch with
// that status as it is; the other request steps again and finishes.
TEST(EngineBackend, AStepFailureAnswersOneRequestAndTheOthersGoOn) {
  Record record;
  record.fail_step = 4;
  record.failure = absl::UnavailableError("device lost");
  auto engine = Engine::load(tiny_model_dir(kModel), options(&record));
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<std::shared_ptr<Job>> jobs;
  {
    SchedulerOptions so;
    so.max_batch = 2;
    Scheduler scheduler(engine->get(), so);
    for (int i = 0; i < 2; ++i) jobs.push_back(*scheduler.submit(request(10, 6, i)));
    for (auto& job : jobs) {
      while (!job->done()) job->wait(Job::Clock::now() + std::chrono::milliseconds(50));
    }
  }
  int failed = 0, finished = 0;
  for (auto& job : jobs) {
    if (job->result().ok()) {
      EXPECT_EQ(job->result()->tokens.size(), 6u);
      ++finished;
    } else {
      EXPECT_EQ(job->result().status(), absl::UnavailableError("device lost"));
      ++failed;
    }
  }
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(finished, 1);
  std::lock_guard<std::mutex> lock(record.mu);
  EXPECT_TRUE(record.live.empty());
}

TEST(EngineBackend, DevicesRefuseWhatTheyDoNotRun) {
  Record record;
  EngineOptions o = options(&record);
  o.retrieval.policy = PolicyKind::kQuest;
  auto quest = Engine::load(tiny_model_dir(kModel), o);
  EXPECT_EQ(quest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(quest.status().message().find("full policy"), std::string::npos) << quest.status();
  o = options(&record);
  o.make_device_backend = nullptr;
  auto none = Engine::load(tiny_model_dir(kModel), o);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("recording:0"), std::string::npos) << none.status();
  o = options(&record);
  o.make_device_backend = [](const ModelWeights&, const EngineOptions&) -> absl::StatusOr<std::unique_ptr<StepBackend>> {
    return absl::ResourceExhaustedError("GPU memory: too small");
  };
  auto small = Engine::load(tiny_model_dir(kModel), o);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace freekv
