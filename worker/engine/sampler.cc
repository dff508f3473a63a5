#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace freekv {

absl::Status validate_sampling(const SamplingParams& p) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be a finite number >= 0 (0 = greedy), got ", p.temperature));
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (0 = no limit), got ", p.top_k));
  return absl::OkStatus();
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (params_.temperature == 0) {
    // Lowest id wins ties, so greedy output does not depend on summation noise between equal logits.
    return int32_t(std::max_element(logits, logits + vocab) - logits);
  }
  candidates_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) candidates_[size_t(i)] = {logits[i], int32_t(i)};
  int64_t n = vocab;
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (params_.top_k > 0 && params_.top_k < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), by_logit);
    n = params_.top_k;
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax at temperature over the survivors (sorted, so the first is the max).
  const double inv_t = 1.0 / params_.temperature, top = candidates_[0].first;
  std::vector<double> probs(static_cast<size_t>(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += probs[size_t(i)] = std::exp((candidates_[size_t(i)].first - top) * inv_t);
  // Nucleus: the smallest prefix whose mass reaches top_p (at least one token).
  int64_t keep = n;
  if (params_.top_p < 1) {
    double mass = 0;
    for (int64_t i = 0; i < n; ++i) {
      mass += probs[size_t(i)] / sum;
      if (mass >= params_.top_p) { keep = i + 1; break; }
    }
  }
  double kept = 0;
  for (int64_t i = 0; i < keep; ++i) kept += probs[size_t(i)];
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= probs[size_t(i)];
    if (u <= 0) return candidates_[size_t(i)].second;
  }
  return candidates_[size_t(keep - 1)].second;
}

}  // namespace freekv
