#include "kvstore/recall_stats.h"

#include <time.h>

namespace freekv::kvstore {

int64_t RecallStats::now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec);
}

void RecallStats::add_buffer(uint64_t bytes, uint64_t chunks, uint64_t busy_ns) {
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  chunks_.fetch_add(chunks, std::memory_order_relaxed);
  const int64_t s = now_s();
  std::lock_guard lock(mu_);
  Second& w = window_[size_t(s % 60)];
  if (w.second != s) w = Second{s, 0, 0};
  w.bytes += bytes;
  w.busy_ns += busy_ns;
}

RecallStats::Snapshot RecallStats::snapshot() const {
  Snapshot out;
  out.bytes_total = bytes_.load(std::memory_order_relaxed);
  out.chunks_total = chunks_.load(std::memory_order_relaxed);
  out.recalls_total = recalls_.load(std::memory_order_relaxed);
  out.errors_total = errors_.load(std::memory_order_relaxed);
  const int64_t s = now_s();
  uint64_t bytes = 0, busy = 0;
  {
    std::lock_guard lock(mu_);
    for (const Second& w : window_) {
      if (w.second >= 0 && s - w.second < 60) {
        bytes += w.bytes;
        busy += w.busy_ns;
      }
    }
  }
  out.gbps_last_minute = double(bytes) / 60.0 / 1e9;
  out.busy_gbps_last_minute = busy > 0 ? double(bytes) / double(busy) : 0.0;
  return out;
}

}  // namespace freekv::kvstore
