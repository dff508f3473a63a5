// The scheduler's reports to its observer, read through the worker's Prometheus metrics: tokens, time to
// first token and inter-token gaps per request, prompt rows and batch sizes per step, and every request's
// end by status code (finished, refused at admission, cancelled).
#include <gtest/gtest.h>

#include "common/metrics.h"
#include "test_models.h"
#include "worker/engine/scheduler.h"
#include "worker/service/worker_metrics.h"

namespace freekv {
namespace {

const TinyModel kModel = {"sched-gqa2", ModelArch::kLlama, 2, 128, 4, 2, 32, 128};

class SchedulerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions o;
    o.threads = 2;
    o.page_tokens = 16;
    o.prefill_chunk = 16;  // a 40-token prompt takes three steps: requests overlap in the batch
    auto e = Engine::load(tiny_model_dir(kModel), o);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    SchedulerOptions so;
    so.max_batch = 4;
    so.observer = &observer_;
    scheduler_ = std::make_unique<Scheduler>(engine_.get(), so);
  }

  std::shared_ptr<Job> submit(int prompt_tokens, int max_tokens) {
    GenerateRequest r;
    for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(int32_t((i * 37 + 5) % 250));
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    auto job = scheduler_->submit(std::move(r));
    EXPECT_TRUE(job.ok()) << job.status();
    return *job;
  }

  static void wait_done(Job& job) {
    while (!job.done()) job.wait(Job::Clock::now() + std::chrono::milliseconds(50));
  }

  double counter(const std::string& name, const MetricLabels& labels = {}) { return registry_.counter(name, "", labels).value(); }
  uint64_t observations(const std::string& name, const std::vector<double>& bounds) {
    Histogram& h = registry_.histogram(name, "", bounds);
    return h.cumulative_count(h.upper_bounds().size());
  }

  MetricsRegistry registry_;
  WorkerMetrics observer_{&registry_};
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerMetricsTest, TokensLatenciesAndStepsAddUpOverConcurrentRequests) {
  auto a = submit(40, 10);
  auto b = submit(70, 6);
  wait_done(*a);
  wait_done(*b);
  ASSERT_TRUE(a->result().ok()) << a->result().status();
  ASSERT_TRUE(b->result().ok()) << b->result().status();
  EXPECT_EQ(counter("freekv_worker_requests_total", {{"code", "OK"}}), 2);
  EXPECT_EQ(counter("freekv_worker_generated_tokens_total"), 16);
  EXPECT_EQ(counter("freekv_worker_prompt_tokens_total"), 110);
  EXPECT_EQ(observations("freekv_worker_time_to_first_token_seconds", exponential_buckets(0.005, 2, 16)), 2u);
  EXPECT_EQ(observations("freekv_worker_inter_token_latency_seconds", exponential_buckets(0.001, 2, 16)), 9u + 5u);
  const double steps = counter("freekv_worker_steps_total");
  const std::vector<double> batch_bounds = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  Histogram& batch = registry_.histogram("freekv_worker_batch_size", "", batch_bounds);
  EXPECT_EQ(double(batch.cumulative_count(batch_bounds.size())), steps);
  EXPECT_LT(batch.cumulative_count(0), batch.cumulative_count(batch_bounds.size())) << "the two requests never shared a step";
  // Rows: every prompt token once, plus one decode row per generated token but the last of each request
  // (a request's last token is sampled from the row before it).
  EXPECT_EQ(counter("freekv_worker_step_rows_total"), 110 + (10 - 1) + (6 - 1));
}

TEST_F(SchedulerMetricsTest, RefusedAndCancelledRequestsAreCountedByCode) {
  GenerateRequest empty;  // no prompt: refused at admission
  auto refused = scheduler_->submit(empty);
  ASSERT_TRUE(refused.ok());
  wait_done(**refused);
  EXPECT_EQ((*refused)->result().status().code(), absl::StatusCode::kInvalidArgument);
  auto long_one = submit(20, 3000);
  long_one->cancel(absl::CancelledError("the client went away"));
  wait_done(*long_one);
  EXPECT_EQ(counter("freekv_worker_requests_total", {{"code", "INVALID_ARGUMENT"}}), 1);
  EXPECT_EQ(counter("freekv_worker_requests_total", {{"code", "CANCELLED"}}), 1);
  EXPECT_EQ(counter("freekv_worker_requests_total", {{"code", "OK"}}), 0);
}

}  // namespace
}  // namespace freekv
