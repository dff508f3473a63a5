// The worker's Prometheus metrics: requests by how they ended, prompt and generated tokens, time to
// first token and inter-token latency, batch size and step time, queue and batch occupancy, the
// worker-tier KV pages, and FreeKV's recall traffic and correction rate.
//
// The scheduler reports steps, tokens and request ends on its engine thread (SchedulerObserver); the
// occupancy gauges are read at scrape time without stopping the engine.
#pragma once

#include "common/metrics.h"
#include "worker/engine/scheduler.h"

namespace freekv {

class WorkerMetrics final : public SchedulerObserver {
 public:
  explicit WorkerMetrics(MetricsRegistry* registry);

  // Scrape-time gauges from the scheduler (queued, running) and the engine's KV pool; both must
  // outlive the registry's scrapes.
  void watch(Scheduler* scheduler, Engine* engine);

  void on_step(int sequences, int64_t rows, int64_t prefill_rows, double seconds, const RetrievalStats& recall) override;
  void on_tokens(int64_t tokens, double seconds, bool first) override;
  void on_finish(const absl::Status& status) override;

 private:
  MetricsRegistry* registry_;
  Counter& steps_;
  Histogram& step_seconds_;
  Histogram& batch_size_;
  Counter& step_rows_;
  Histogram& ttft_;
  Histogram& itl_;
  Counter& prompt_tokens_;
  Counter& generated_tokens_;
  Counter& recall_bytes_;
  Counter& recall_chunks_;
  Counter& sync_recalls_;
  Counter& async_recalls_;
  Counter& recall_wait_seconds_;
  Counter& correction_checks_;
  Counter& corrections_;
  Counter& selection_steps_;
};

}  // namespace freekv
