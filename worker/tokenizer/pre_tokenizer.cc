#include "worker/tokenizer/pre_tokenizer.h"

#include "worker/tokenizer/byte_level.h"
#include "worker/tokenizer/regex.h"

namespace freekv::tok {

namespace {

constexpr int kMaxDepth = 16;  // nested Sequences; bounds recursion on hostile input

// The split regex of GPT-2, used by ByteLevel when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Isolated: every match becomes its own piece, and so does every stretch between matches.
// Removed: matches are dropped, the stretches between them kept.
class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, bool keep_matches)
      : regex_(std::move(regex)), keep_matches_(keep_matches) {}

  void apply(std::vector<std::string>* pieces) const override {
    std::vector<std::string> out;
    out.reserve(pieces->size());
    std::vector<std::pair<size_t, size_t>> matches;
    for (const std::string& piece : *pieces) {
      matches.clear();
      regex_->find_all(piece, &matches);
      size_t prev = 0;
      for (auto [b, e] : matches) {
        if (prev < b) out.emplace_back(piece, prev, b - prev);
        if (keep_matches_ && e > b) out.emplace_back(piece, b, e - b);
        prev = e;
      }
      if (prev < piece.size()) out.emplace_back(piece, prev, piece.size() - prev);
    }
    *pieces = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  bool keep_matches_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  void apply(std::vector<std::string>* pieces) const override {
    std::vector<std::string> out;
    out.reserve(pieces->size());
    std::vector<std::pair<size_t, size_t>> matches;
    for (std::string& piece : *pieces) {
      // As in Hugging Face: a space is put in front of every piece that does not start with one.
      if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) piece.insert(piece.begin(), ' ');
      if (!regex_) {
        out.push_back(bytes_to_byte_level(piece));
        continue;
      }
      // The GPT-2 pattern covers every character, so keeping only the matches loses nothing.
      matches.clear();
      regex_->find_all(piece, &matches);
      for (auto [b, e] : matches) {
        if (e > b) out.push_back(bytes_to_byte_level(std::string_view(piece).substr(b, e - b)));
      }
    }
    *pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // null when use_regex is false
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>* pieces) const override {
    for (const auto& step : steps_) step->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> parse_split(const json& j, const JsonWhere& where) {
  FREEKV_ASSIGN_OR_RETURN(const json* pattern, json_require(j, "pattern", where));
  JsonWhere pwhere = where.field("pattern");
  std::unique_ptr<Regex> regex;
  if (const json* r = json_find(*pattern, "Regex")) {
    if (!r->is_string()) return pwhere.field("Regex").error("must be a string");
    auto compiled = Regex::compile_oniguruma(r->get_ref<const std::string&>());
    if (!compiled.ok()) return pwhere.error(std::string(compiled.status().message()));
    regex = std::move(compiled).value();
  } else if (const json* s = json_find(*pattern, "String")) {
    if (!s->is_string()) return pwhere.field("String").error("must be a string");
    if (s->get_ref<const std::string&>().empty()) return pwhere.field("String").error("must not be empty");
    auto compiled = Regex::compile_literal(s->get_ref<const std::string&>());
    if (!compiled.ok()) return pwhere.error(std::string(compiled.status().message()));
    regex = std::move(compiled).value();
  } else {
    return pwhere.error("must be an object {\"Regex\": ...} or {\"String\": ...}");
  }
  FREEKV_ASSIGN_OR_RETURN(std::string behavior, json_string(j, "behavior", where));
  FREEKV_ASSIGN_OR_RETURN(bool invert, json_bool(j, "invert", false, where));
  if (invert) return where.error("Split with \"invert\": true is not supported");
  if (behavior == "Isolated") return std::make_unique<SplitPreTokenizer>(std::move(regex), true);
  if (behavior == "Removed") return std::make_unique<SplitPreTokenizer>(std::move(regex), false);
  return where.error(absl::StrCat("Split behavior \"", behavior, "\" is not supported (supported: Isolated, Removed)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> parse_at(const json& j, const JsonWhere& where, int depth) {
  if (depth > kMaxDepth) return where.error("pre_tokenizer Sequence nested too deeply");
  FREEKV_ASSIGN_OR_RETURN(std::string type, json_component_type(j, where));
  if (type == "Split") return parse_split(j, where);
  if (type == "ByteLevel") {
    FREEKV_ASSIGN_OR_RETURN(bool add_prefix_space, json_bool(j, "add_prefix_space", false, where));
    FREEKV_ASSIGN_OR_RETURN(bool use_regex, json_bool(j, "use_regex", true, where));
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      auto compiled = Regex::compile_oniguruma(kGpt2Pattern);
      if (!compiled.ok()) return where.error(std::string(compiled.status().message()));
      regex = std::move(compiled).value();
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Sequence") {
    FREEKV_ASSIGN_OR_RETURN(const json* list, json_require(j, "pretokenizers", where));
    if (!list->is_array()) return where.field("pretokenizers").error("must be an array");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list->size(); ++i) {
      FREEKV_ASSIGN_OR_RETURN(auto step, parse_at((*list)[i], where.field("pretokenizers").index(i), depth + 1));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return where.error(absl::StrCat("pre-tokenizer type \"", type,
                                  "\" is not supported (supported: Split, ByteLevel, Sequence)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::parse(const json& j, const JsonWhere& where) {
  return parse_at(j, where, 0);
}

}  // namespace freekv::tok
