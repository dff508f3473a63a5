#include "common/metrics.h"

#include <glog/logging.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace freekv {
namespace {

bool valid_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':'; });
}

// Label values escape backslash, double quote and newline; help text escapes backslash and newline.
std::string escape(const std::string& s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quote) out += "\\\"";
    else out += c;
  }
  return out;
}

// The inside of a sample's braces, a="x",b="y" ("" without labels).
std::string label_body(const MetricLabels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    CHECK(valid_name(k) && k != "le") << "bad metric label name '" << k << "'";
    if (!out.empty()) out += ',';
    out += k + "=\"" + escape(v, true) + "\"";
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
  return std::string(buf, r.ptr);
}

std::string braces(const std::string& body) { return body.empty() ? "" : "{" + body + "}"; }

}  // namespace

void Counter::advance_to(double total) {
  double now = value_.load(std::memory_order_relaxed);
  while (total > now && !value_.compare_exchange_weak(now, total, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  CHECK(std::is_sorted(bounds_.begin(), bounds_.end()) &&
        std::adjacent_find(bounds_.begin(), bounds_.end()) == bounds_.end())
      << "histogram bounds must increase strictly";
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v, uint64_t times) {
  const size_t bucket = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[bucket].fetch_add(times, std::memory_order_relaxed);
  sum_.fetch_add(v * double(times), std::memory_order_relaxed);
}

uint64_t Histogram::cumulative_count(size_t i) const {
  uint64_t n = 0;
  for (size_t b = 0; b <= i && b <= bounds_.size(); ++b) n += counts_[b].load(std::memory_order_relaxed);
  return n;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  for (double b = start; int(out.size()) < count; b *= factor) out.push_back(b);
  return out;
}

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, const std::string& help, Type type) {
  CHECK(valid_name(name)) << "bad metric name '" << name << "'";
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = type;
    it->second.help = help;
  }
  CHECK(it->second.type == type) << "metric " << name << " registered with two types";
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help, const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, Type::kCounter).counters[label_body(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help, const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, Type::kGauge).gauges[label_body(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      const std::vector<double>& upper_bounds, const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, Type::kHistogram).histograms[label_body(labels)];
  if (!slot) slot = std::make_unique<Histogram>(upper_bounds);
  return *slot;
}

void MetricsRegistry::on_scrape(std::function<void()> collect) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collect));
}

std::string MetricsRegistry::render() {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors) c();  // outside the lock: collectors register and set metrics
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    static const char* kTypeNames[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + name + " " + escape(f.help, false) + "\n";
    out += "# TYPE " + name + " " + kTypeNames[int(f.type)] + "\n";
    for (const auto& [labels, c] : f.counters) out += name + braces(labels) + " " + number(c->value()) + "\n";
    for (const auto& [labels, g] : f.gauges) out += name + braces(labels) + " " + number(g->value()) + "\n";
    for (const auto& [labels, h] : f.histograms) {
      const std::string sep = labels.empty() ? "" : labels + ",";
      const auto& bounds = h->upper_bounds();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        const std::string le = i < bounds.size() ? number(bounds[i]) : "+Inf";
        out += name + "_bucket{" + sep + "le=\"" + le + "\"} " + std::to_string(h->cumulative_count(i)) + "\n";
      }
      out += name + "_sum" + braces(labels) + " " + number(h->sum()) + "\n";
      out += name + "_count" + braces(labels) + " " + std::to_string(h->cumulative_count(bounds.size())) + "\n";
    }
  }
  return out;
}

}  // namespace freekv
