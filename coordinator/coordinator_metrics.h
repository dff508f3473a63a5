// The coordinator's Prometheus metrics, as clients see the service: Generate calls by status code,
// tokens relayed, time to first token and inter-token latency measured at the coordinator, open
// streams, retries on another worker, and (at scrape time) workers by state and known sessions.
#pragma once

#include <chrono>

#include "absl/status/status.h"
#include "common/metrics.h"
#include "coordinator/cluster.h"

namespace freekv {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(MetricsRegistry* registry);
  // Scrape-time gauges of the cluster (workers by state, sessions); it must outlive the scrapes.
  void watch(Cluster* cluster);
  void on_retry() { retries_.add(); }

  // One Generate call, from its arrival to its status.
  class Stream {
   public:
    explicit Stream(CoordinatorMetrics* m);
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    // A relayed message carrying `tokens` token ids.
    void on_chunk(int tokens);
    void finish(const absl::Status& status);

   private:
    using Clock = std::chrono::steady_clock;
    CoordinatorMetrics* m_;
    Clock::time_point last_;  // arrival, then the last relayed tokens
    bool any_tokens_ = false;
  };

 private:
  MetricsRegistry* registry_;
  Gauge& active_;
  Counter& tokens_;
  Counter& retries_;
  Histogram& ttft_;
  Histogram& itl_;
};

}  // namespace freekv
