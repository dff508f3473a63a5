#include "coordinator/coordinator_metrics.h"

namespace freekv {

CoordinatorMetrics::CoordinatorMetrics(MetricsRegistry* r)
    : registry_(r),
      active_(r->gauge("freekv_coordinator_active_streams", "Generate calls in progress.")),
      tokens_(r->counter("freekv_coordinator_generated_tokens_total", "Generated tokens relayed to clients.")),
      retries_(r->counter("freekv_coordinator_retries_total",
                          "Generate calls retried on another worker after the first one failed without answering.")),
      ttft_(r->histogram("freekv_coordinator_time_to_first_token_seconds",
                         "From a Generate call's arrival at the coordinator to the relay of its first token.",
                         exponential_buckets(0.005, 2, 16))),
      itl_(r->histogram("freekv_coordinator_inter_token_latency_seconds",
                        "Gap between a stream's successive tokens as relayed (a message of k tokens counts k gaps of 1/k).",
                        exponential_buckets(0.001, 2, 16))) {}

void CoordinatorMetrics::watch(Cluster* cluster) {
  const char* kWorkers = "Registered workers by state: alive (ready for work), draining, dead.";
  Gauge& alive = registry_->gauge("freekv_coordinator_workers", kWorkers, {{"state", "alive"}});
  Gauge& draining = registry_->gauge("freekv_coordinator_workers", kWorkers, {{"state", "draining"}});
  Gauge& dead = registry_->gauge("freekv_coordinator_workers", kWorkers, {{"state", "dead"}});
  Gauge& sessions = registry_->gauge("freekv_coordinator_sessions", "Sessions the coordinator routes.");
  registry_->on_scrape([=, &alive, &draining, &dead, &sessions] {
    int n_alive = 0, n_draining = 0, n_dead = 0;
    for (const auto& w : cluster->registry().all()) {
      const std::string state = cluster->registry().status(*w).state();
      if (state == "dead") ++n_dead;
      else if (state == "draining") ++n_draining;
      else ++n_alive;
    }
    alive.set(n_alive);
    draining.set(n_draining);
    dead.set(n_dead);
    sessions.set(double(cluster->sessions().size()));
  });
}

CoordinatorMetrics::Stream::Stream(CoordinatorMetrics* m) : m_(m), last_(Clock::now()) {
  m_->active_.add(1);
}

CoordinatorMetrics::Stream::~Stream() { m_->active_.add(-1); }

void CoordinatorMetrics::Stream::on_chunk(int tokens) {
  if (tokens <= 0) return;
  const Clock::time_point now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (!any_tokens_) m_->ttft_.observe(since);
  else m_->itl_.observe(since / tokens, uint64_t(tokens));
  any_tokens_ = true;
  last_ = now;
  m_->tokens_.add(tokens);
}

void CoordinatorMetrics::Stream::finish(const absl::Status& status) {
  m_->registry_->counter("freekv_coordinator_requests_total", "Generate calls ended, by status code.",
                         {{"code", absl::StatusCodeToString(status.code())}}).add();
}

}  // namespace freekv
