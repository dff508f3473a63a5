#include "tools/eval_tasks.h"

#include <vector>

#include "absl/strings/str_format.h"

namespace freekv {
namespace {

const char* const kFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

int64_t count_tokens(const Tokenizer& t, const std::string& text) { return int64_t(t.encode(text, false).size()); }

// Units repeated until the token count reaches `tokens` (measured on a sample, then trimmed).
std::vector<std::string> units_for(const Tokenizer& t, int64_t tokens, const std::function<std::string(int64_t)>& unit) {
  const int64_t per_unit = std::max<int64_t>(1, count_tokens(t, unit(0) + unit(1)) / 2);
  std::vector<std::string> units;
  for (int64_t i = 0; i * per_unit < tokens; ++i) units.push_back(unit(i));
  return units;
}

}  // namespace

std::string make_filler(const Tokenizer& t, int64_t tokens) {
  std::string out;
  for (const auto& u : units_for(t, tokens, [](int64_t) { return std::string(kFiller); })) out += u;
  return out;
}

EvalCase make_passkey_case(const Tokenizer& t, int64_t tokens, double depth, std::mt19937_64& rng) {
  const std::string key = absl::StrFormat("%05d", int(rng() % 100000));
  const std::string intro = "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it. ";
  const std::string needle = "The pass key is " + key + ". Remember it. " + key + " is the pass key. ";
  const std::string question = "What is the pass key? The pass key is";
  const int64_t budget = tokens - count_tokens(t, intro + needle + question);
  std::vector<std::string> units = units_for(t, budget, [](int64_t) { return std::string(kFiller); });
  const size_t at = size_t(depth * double(units.size()));
  std::string prompt = intro;
  for (size_t i = 0; i <= units.size(); ++i) {
    if (i == at) prompt += needle;
    if (i < units.size()) prompt += units[i];
  }
  return {prompt + question, key};
}

EvalCase make_kv_case(const Tokenizer& t, int64_t tokens, double depth, std::mt19937_64& rng) {
  auto hex = [&] { return absl::StrFormat("%08x", uint32_t(rng())); };
  std::vector<std::pair<std::string, std::string>> pairs;
  const std::string intro = "Below is a list of keys and their values. Each value belongs to exactly one key.\n";
  std::vector<std::string> units = units_for(t, tokens - 40, [&](int64_t) {
    pairs.emplace_back(hex(), hex());
    return "\"" + pairs.back().first + "\": \"" + pairs.back().second + "\"\n";
  });
  // units_for drew two sample units before the real ones: the pairs that were kept are the last ones.
  pairs.erase(pairs.begin(), pairs.end() - int64_t(units.size()));
  const size_t pick = std::min(pairs.size() - 1, size_t(depth * double(pairs.size())));
  std::string prompt = intro;
  for (const auto& u : units) prompt += u;
  prompt += "\nThe value of key \"" + pairs[pick].first + "\" is \"";
  return {prompt, pairs[pick].second};
}

}  // namespace freekv
