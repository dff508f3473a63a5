// Recall counters of one kvstore process: totals since start and a per-second window of the last
// minute (bytes and time spent gathering), for GetPoolStats. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace freekv::kvstore {

class RecallStats {
 public:
  // One handed-over buffer: `bytes` of `chunks` gathered in `busy_ns`.
  void add_buffer(uint64_t bytes, uint64_t chunks, uint64_t busy_ns);
  void add_recall() { recalls_.fetch_add(1, std::memory_order_relaxed); }
  void add_error() { errors_.fetch_add(1, std::memory_order_relaxed); }

  struct Snapshot {
    uint64_t bytes_total = 0, chunks_total = 0, recalls_total = 0, errors_total = 0;
    double gbps_last_minute = 0;       // bytes in the last 60 s / 60 s
    double busy_gbps_last_minute = 0;  // same bytes / gathering time
  };
  Snapshot snapshot() const;

 private:
  static int64_t now_s();
  struct Second {
    int64_t second = -1;
    uint64_t bytes = 0, busy_ns = 0;
  };
  std::atomic<uint64_t> bytes_{0}, chunks_{0}, recalls_{0}, errors_{0};
  mutable std::mutex mu_;
  std::array<Second, 60> window_{};
};

}  // namespace freekv::kvstore
