#include "worker/retrieval/config.h"

#include <algorithm>

namespace freekv {

absl::Status validate_retrieval(const RetrievalConfig& c, int64_t pt, int64_t n_layers) {
  auto whole_pages = [&](const char* flag, int64_t v) -> absl::Status {
    if (v < 0 || v % pt != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " (", v, ") must be a non-negative multiple of the page size (",
                                                     pt, " tokens)"));
    }
    return absl::OkStatus();
  };
  if (c.policy != PolicyKind::kFull) {  // full attends everything: the budget does not apply
    FREEKV_RETURN_IF_ERROR(whole_pages("budget", c.budget));
    FREEKV_RETURN_IF_ERROR(whole_pages("sink", c.sink));
    FREEKV_RETURN_IF_ERROR(whole_pages("recent", c.recent));
    if (c.recent < 2 * pt) {
      return absl::InvalidArgumentError(absl::StrCat("--recent (", c.recent, ") must cover at least two pages (", 2 * pt,
                                                     " tokens): the window holds the partial current page"));
    }
    const int64_t middle = c.budget - c.sink - c.recent;
    if (c.policy == PolicyKind::kStreaming ? middle < 0 : middle < pt) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--budget (", c.budget, ") must exceed --sink + --recent (", c.sink + c.recent, ")",
          c.policy == PolicyKind::kStreaming ? "" : " by at least one page, the room for selected pages"));
    }
  }
  if (!(c.correction_threshold >= -1 && c.correction_threshold <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--correction-threshold must be a cosine in [-1, 1], got ", c.correction_threshold));
  }
  for (int l : c.dense_layers) {
    if (l < 0 || l >= n_layers) {
      return absl::InvalidArgumentError(absl::StrCat("--dense-layers names layer ", l, " but the model has layers 0..", n_layers - 1));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PolicyKind> parse_policy(const std::string& name) {
  if (name == "full") return PolicyKind::kFull;
  if (name == "streaming") return PolicyKind::kStreaming;
  if (name == "quest") return PolicyKind::kQuest;
  if (name == "arkvale") return PolicyKind::kArkvale;
  if (name == "freekv") return PolicyKind::kFreekv;
  return absl::InvalidArgumentError(absl::StrCat("unknown policy '", name, "'; use full, streaming, quest, arkvale or freekv"));
}

absl::StatusOr<GqaScore> parse_gqa_score(const std::string& name) {
  if (name == "avg") return GqaScore::kAvg;
  if (name == "avgsm") return GqaScore::kAvgSoftmax;
  return absl::InvalidArgumentError(absl::StrCat("unknown GQA score '", name, "'; use avg or avgsm"));
}

absl::StatusOr<DigestKind> parse_digest(const std::string& name) {
  if (name == "minmax") return DigestKind::kMinMax;
  if (name == "center-mad") return DigestKind::kCenterMad;
  return absl::InvalidArgumentError(absl::StrCat("unknown digest '", name, "'; use minmax or center-mad"));
}

const char* policy_name(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kFull: return "full";
    case PolicyKind::kStreaming: return "streaming";
    case PolicyKind::kQuest: return "quest";
    case PolicyKind::kArkvale: return "arkvale";
    case PolicyKind::kFreekv: return "freekv";
  }
  return "?";
}

}  // namespace freekv
