#include "tools/eval_tasks.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"

namespace freekv {
namespace {

// The classic passkey haystack (as in the Landmark Attention paper's test).
const char* const kFiller =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const char* const kNeedleWords[] = {"apple", "river", "garden", "silver", "window", "mountain", "candle", "harbor",
                                    "forest", "lantern", "meadow", "castle", "bridge", "thunder", "orchard", "valley"};

int64_t count_tokens(const Tokenizer& t, const std::string& text) { return int64_t(t.encode(text, false).size()); }

// Units repeated until the token count reaches `tokens` (measured on a sample, then trimmed).
std::vector<std::string> units_for(const Tokenizer& t, int64_t tokens, const std::function<std::string(int64_t)>& unit) {
  const int64_t per_unit = std::max<int64_t>(1, count_tokens(t, unit(0) + unit(1)) / 2);
  std::vector<std::string> units;
  for (int64_t i = 0; i * per_unit < tokens; ++i) units.push_back(unit(i));
  return units;
}

// intro, then filler with each needle inserted before the filler unit at its depth, then question.
std::string hide(const Tokenizer& t, int64_t tokens, const std::string& intro,
                 const std::vector<std::pair<double, std::string>>& needles, const std::string& question) {
  std::string fixed = intro + question;
  for (const auto& [_, n] : needles) fixed += n;
  std::vector<std::string> units = units_for(t, tokens - count_tokens(t, fixed), [](int64_t) { return std::string(kFiller); });
  std::string prompt = intro;
  for (size_t i = 0; i <= units.size(); ++i) {
    for (const auto& [depth, n] : needles) {
      if (size_t(depth * double(units.size())) == i) prompt += n;
    }
    if (i < units.size()) prompt += units[i];
  }
  return prompt + question;
}

}  // namespace

std::string make_filler(const Tokenizer& t, int64_t tokens) {
  std::string out;
  for (const auto& u : units_for(t, tokens, [](int64_t) { return std::string(kFiller); })) out += u;
  return out;
}

EvalCase make_passkey_case(const Tokenizer& t, int64_t tokens, double depth, std::mt19937_64& rng) {
  const std::string key = absl::StrFormat("%05d", int(10000 + rng() % 90000));
  const std::string intro = " There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it.";
  const std::string needle = " The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  return {hide(t, tokens, intro, {{depth, needle}}, " What is the pass key? The pass key is"), key};
}

EvalCase make_needle_case(const Tokenizer& t, int64_t tokens, double depth, std::mt19937_64& rng) {
  std::vector<std::string> words(std::begin(kNeedleWords), std::end(kNeedleWords));
  std::shuffle(words.begin(), words.end(), rng);
  std::uniform_real_distribution<double> anywhere(0.0, 1.0);
  std::vector<std::pair<double, std::string>> needles;
  std::string answer;
  for (int i = 0; i < 4; ++i) {
    const std::string number = absl::StrFormat("%07d", int(1000000 + rng() % 9000000));
    if (i == 0) answer = number;
    needles.push_back({i == 0 ? depth : anywhere(rng), " The special magic number for " + words[size_t(i)] + " is " + number + "."});
  }
  const std::string subject = "the special magic number for " + words[0];
  return {hide(t, tokens, " Some facts are hidden in the text below. Remember them.", needles,
               " What is " + subject + "? The special magic number for " + words[0] + " is"),
          answer};
}

EvalCase make_kv_case(const Tokenizer& t, int64_t tokens, double depth, std::mt19937_64& rng) {
  auto hex = [&] { return absl::StrFormat("%08x", uint32_t(rng())); };
  std::vector<std::pair<std::string, std::string>> pairs;
  const std::string intro = " Below is a list of keys and their values. Each value belongs to exactly one key.";
  std::vector<std::string> units = units_for(t, tokens - 40, [&](int64_t) {
    pairs.emplace_back(hex(), hex());
    return " \"" + pairs.back().first + "\": \"" + pairs.back().second + "\",";
  });
  // units_for drew two sample units before the real ones: the pairs that were kept are the last ones.
  pairs.erase(pairs.begin(), pairs.end() - int64_t(units.size()));
  const size_t pick = std::min(pairs.size() - 1, size_t(depth * double(pairs.size())));
  std::string prompt = intro;
  for (const auto& u : units) prompt += u;
  const std::string& key = pairs[pick].first;
  prompt += " Find the value of \"" + key + "\". \"" + key + "\":";
  return {prompt, pairs[pick].second};
}

}  // namespace freekv
