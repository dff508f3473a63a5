// What the serving and load benchmarks measure as a client: a Generate stream's tokens timed as they
// arrive, and quantiles of the results.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "freekv/v1/generation.grpc.pb.h"

namespace freekv {

// The p-quantile (p in [0, 1]) of a sample, nearest rank; 0 for an empty sample.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[size_t(std::min<double>(double(v.size() - 1), std::floor(p * double(v.size() - 1) + 0.5)))];
}

struct TokenTiming {
  double ttft = 0;            // request sent → first token received (s); 0 while none arrived
  std::vector<double> gaps;   // between consecutive received tokens (s); tokens sharing a message: 0
  int64_t tokens = 0;
};

// Reads a Generate stream to its end, timing each token when it is received; returns the call's status.
inline grpc::Status read_timed(grpc::ClientReaderInterface<v1::GenerateResponse>* reader,
                               std::chrono::steady_clock::time_point sent, TokenTiming* t) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  v1::GenerateResponse msg;
  Clock::time_point last;
  while (reader->Read(&msg)) {
    if (!msg.has_chunk()) continue;
    const auto now = Clock::now();
    for (int i = 0; i < msg.chunk().token_ids_size(); ++i) {
      if (t->tokens == 0) t->ttft = seconds(now - sent);
      else t->gaps.push_back(i == 0 ? seconds(now - last) : 0.0);
      ++t->tokens;
    }
    last = now;
  }
  return reader->Finish();
}

}  // namespace freekv
