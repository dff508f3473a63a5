// Retrieval settings: which policy, the per-(sequence, layer, KV head) budget and its parts, and
// FreeKV's correction threshold (DESIGN §3). Budgets are in tokens and must be whole pages.
//
// Policies:
//   full      every page resident, dense attention (the accuracy and speed reference)
//   streaming sinks + a window of (budget − sink) tokens only (StreamingLLM); the rest is dropped
//   quest     every page resident locally, attention over sinks + top-k pages + window (no recall)
//   arkvale   offloaded: select with the current query, recall missing pages synchronously
//   freekv    offloaded: attend pages chosen with the previous step's query and recalled in the
//             background; per KV head, when the query moved (cosine < τ), re-select and recall now
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/ops.h"

namespace freekv {

enum class PolicyKind { kFull, kStreaming, kQuest, kArkvale, kFreekv };
enum class GqaScore { kAvg, kAvgSoftmax };  // mean of raw scores, or mean of per-head softmaxed scores

struct RetrievalConfig {
  PolicyKind policy = PolicyKind::kFull;
  int64_t budget = 2048;  // tokens attended per KV head once the context outgrows it
  int64_t sink = 512;     // first tokens always attended
  int64_t recent = 512;   // last tokens always attended, the partial current page included
  double correction_threshold = 0.9;  // τ: cosine of consecutive queries below it triggers correction
  GqaScore gqa_score = GqaScore::kAvgSoftmax;
  DigestKind digest = DigestKind::kMinMax;
  std::vector<int> dense_layers;  // layers that always attend the full context

  bool offloaded() const { return policy == PolicyKind::kArkvale || policy == PolicyKind::kFreekv; }
  bool selects() const { return policy == PolicyKind::kQuest || offloaded(); }
};

// Checks the budget against the page size: whole pages, at least two recent pages (the window holds
// the partial page), room for at least one selected page when the policy selects, and dense layers
// within [0, n_layers). Errors say which flag to change.
absl::Status validate_retrieval(const RetrievalConfig& config, int64_t page_tokens, int64_t n_layers);

absl::StatusOr<PolicyKind> parse_policy(const std::string& name);
absl::StatusOr<GqaScore> parse_gqa_score(const std::string& name);
absl::StatusOr<DigestKind> parse_digest(const std::string& name);
const char* policy_name(PolicyKind kind);

}  // namespace freekv
