// Prometheus metrics of one process, rendered in the text exposition format (version 0.0.4) that
// MetricsServer serves on /metrics.
//
// Metrics are registered with a name, a help line and optional labels; registering the same name and
// labels again returns the same metric, so a labelled family (requests by status code) grows as new
// label values appear. Updates are lock-free atomics, safe from any thread (the engine thread records a
// step without taking a lock). Values owned by something else (pool occupancy, queue length) are
// copied into gauges by collectors that on_scrape() runs before each render.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace freekv {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void add(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  // For a total kept elsewhere (read by a collector at scrape time): the counter becomes `total`,
  // never going back.
  void advance_to(double total);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // upper_bounds: strictly increasing bucket bounds; +Inf is implied.
  explicit Histogram(std::vector<double> upper_bounds);
  // Records `times` observations of `v` (a step that sampled k tokens records its per-token gap k times).
  void observe(double v, uint64_t times = 1);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Cumulative count of observations <= upper_bounds()[i]; i == upper_bounds().size() is +Inf.
  uint64_t cumulative_count(size_t i) const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // [bounds_.size() + 1], per bucket (not cumulative)
  std::atomic<double> sum_{0};
};

// start, start*factor, ... (count bounds): latency buckets spanning several orders of magnitude.
std::vector<double> exponential_buckets(double start, double factor, int count);

class MetricsRegistry {
 public:
  // Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*); counters end in _total. Registering a
  // name again with another type aborts: that is a programming error, not an input.
  Counter& counter(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& upper_bounds,
                       const MetricLabels& labels = {});

  // Runs `collect` before every render, to refresh gauges from state the registry does not own.
  void on_scrape(std::function<void()> collect);

  // Every family, sorted by name: # HELP, # TYPE, then one sample line per label set (a histogram's
  // _bucket{le=...}, _sum and _count).
  std::string render();

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    // Keyed by the rendered label set ({a="x",b="y"}); exactly one pointer is set per entry.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& family(const std::string& name, const std::string& help, Type type);

  std::mutex mu_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void()>> collectors_;
};

}  // namespace freekv
