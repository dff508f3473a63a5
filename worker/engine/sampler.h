// Choosing the next token from logits: greedy (temperature 0), or temperature with top-k and top-p
// (nucleus) truncation, from a seeded generator so a run repeats exactly.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "common/status.h"

namespace freekv {

struct SamplingParams {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = no limit
  double top_p = 1.0;        // (0, 1]
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the bad value: negative temperature, top_p outside (0, 1], negative top_k.
absl::Status validate_sampling(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  // logits: [vocab] fp32.
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace freekv
