// What greedy generation alone must produce, said by an in-process reference engine, and how a served
// continuation is compared with it (the services tests and the chaos run).
//
// Greedy outputs are compared exactly. Where a batch mixed a request's rows with others', or a resumed
// session recomputed its partial page, matrix products may take another path (SIMD vs BLAS), so logits
// can differ in the last bits; a difference is accepted only when, at the first differing position,
// the reference itself finds the two tokens tied within a small fraction of the logits' spread
// (checked by teacher forcing) — and nothing after it is compared.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/engine/generate.h"

namespace freekv::testing {

// Greedy continuation of `context` (token ids) by `e` alone: max_tokens ids, end-of-sequence ignored.
inline absl::StatusOr<std::vector<int32_t>> greedy_tokens(Engine& e, const std::vector<int32_t>& context, int max_tokens) {
  GenerateRequest r;
  r.prompt = context;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  FREEKV_ASSIGN_OR_RETURN(GenerateResult res, e.generate(r, nullptr));
  return res.tokens;
}

struct GreedyComparison {
  bool same = false;   // equal, or first different where the reference's logits tie
  std::string detail;  // why not, or where the accepted tie was; empty when equal
};

// Compares `got` with `expected` (the reference's greedy continuation of `context`) as the file
// comment says.
inline GreedyComparison compare_greedy(Engine& e, const std::vector<int32_t>& context, const std::vector<int32_t>& expected,
                                       const std::vector<int32_t>& got) {
  size_t i = 0;
  while (i < expected.size() && i < got.size() && expected[i] == got[i]) ++i;
  if (i == expected.size() && i == got.size()) return {true, ""};
  if (i == expected.size() || i == got.size()) {
    return {false, absl::StrCat(got.size(), " tokens, expected ", expected.size())};
  }
  GenerateRequest r;
  r.prompt = context;
  r.forced_tokens.assign(expected.begin(), expected.begin() + long(i) + 1);
  r.max_tokens = int64_t(i) + 1;
  r.ignore_eos = true;
  r.keep_logits = true;
  auto res = e.generate(r, nullptr);
  if (!res.ok()) return {false, absl::StrCat("the reference failed: ", res.status().ToString())};
  const int64_t vocab = e.weights().config.vocab;
  const float* row = res->logits.data() + (int64_t(res->logits.size()) / vocab - 1) * vocab;
  const auto [lo, hi] = std::minmax_element(row, row + vocab);
  const float gap = std::fabs(row[expected[i]] - row[got[i]]), spread = *hi - *lo;
  if (gap <= 2e-3f * spread) {
    return {true, absl::StrCat("differs from the reference at token ", i, " of ", expected.size(),
                               ", where the reference's logits tie (gap ", gap, ", spread ", spread, ")")};
  }
  return {false, absl::StrCat("token ", i, " is ", got[i], ", expected ", expected[i], " (logit gap ", gap, " of spread ",
                              spread, ": not a tie)")};
}

}  // namespace freekv::testing
