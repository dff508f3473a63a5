#include "worker/retrieval/selection.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace freekv {

std::vector<float> score_candidates(const float* q, int64_t group, const float* digests, int64_t first,
                                    int64_t end, int64_t head_dim, GqaScore gqa) {
  const int64_t n = std::max<int64_t>(0, end - first);
  std::vector<float> per_head(static_cast<size_t>(group * n)), out(static_cast<size_t>(n), 0.f);
  if (n == 0) return out;
  bound_scores(q, group, digests + first * 2 * head_dim, n, head_dim, per_head.data());
  for (int64_t g = 0; g < group; ++g) {
    float* s = per_head.data() + g * n;
    if (gqa == GqaScore::kAvgSoftmax) {
      // Bounds are raw q·k: scale like attention logits before the softmax, so the group's heads
      // weigh pages by attention-like probabilities (the paper's group-consistent selection).
      const float scale = 1.f / std::sqrt(float(head_dim));
      float mx = *std::max_element(s, s + n) * scale, sum = 0.f;
      for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] * scale - mx));
      for (int64_t j = 0; j < n; ++j) s[j] /= sum;
    }
    for (int64_t j = 0; j < n; ++j) out[size_t(j)] += s[j] / float(group);
  }
  return out;
}

std::vector<int32_t> top_k_pages(const std::vector<float>& scores, int64_t first, int64_t k) {
  std::vector<int32_t> idx(scores.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
  if (int64_t(idx.size()) > k) {
    auto better = [&](int32_t a, int32_t b) { return scores[size_t(a)] > scores[size_t(b)] || (scores[size_t(a)] == scores[size_t(b)] && a < b); };
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(size_t(k));
  }
  std::sort(idx.begin(), idx.end());
  for (auto& i : idx) i += int32_t(first);
  return idx;
}

std::vector<SlotMove> plan_slot_updates(const std::vector<int32_t>& slot_pages, const std::vector<int32_t>& selected) {
  std::unordered_set<int32_t> wanted(selected.begin(), selected.end()), held;
  std::vector<int32_t> free_slots, victims;
  for (size_t s = 0; s < slot_pages.size(); ++s) {
    if (slot_pages[s] < 0) free_slots.push_back(int32_t(s));
    else if (wanted.count(slot_pages[s]) == 0) victims.push_back(int32_t(s));
    else held.insert(slot_pages[s]);
  }
  free_slots.insert(free_slots.end(), victims.begin(), victims.end());
  std::vector<SlotMove> updates;
  size_t next = 0;
  for (int32_t page : selected) {
    if (held.count(page) != 0) continue;
    updates.push_back({free_slots[next++], page});  // |selected| ≤ |slots| so a slot is always left
  }
  return updates;
}

}  // namespace freekv
