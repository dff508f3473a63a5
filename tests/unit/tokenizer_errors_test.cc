// Malformed or unsupported tokenizer.json: always an error status whose message names the file, the
// place and the problem; never a crash, an exception or a silently different tokenizer.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "worker/tokenizer/tokenizer.h"

namespace freekv {
namespace {

using json = nlohmann::json;

// Message contains the text (gtest only; gmock matchers are not linked into these tests).
#define EXPECT_HAS(message, part)                                              \
  do {                                                                         \
    std::string m_ = (message);                                                \
    EXPECT_NE(m_.find(part), std::string::npos) << "\"" << part << "\" not in: " << m_; \
  } while (0)

json valid() {
  return json{{"added_tokens", json::array({{{"id", 3}, {"content", "<s>"}, {"special", true}}})},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
}

// The error of loading j (which must fail) as "bad/tokenizer.json".
std::string error_of_text(const std::string& text) {
  auto t = Tokenizer::from_json(text, "bad/tokenizer.json");
  EXPECT_FALSE(t.ok());
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message(t.status().message());
  EXPECT_HAS(message, "bad/tokenizer.json");
  return message;
}
std::string error_of(const json& j) { return error_of_text(j.dump()); }

TEST(TokenizerErrors, ValidBaselineLoads) {
  auto t = Tokenizer::from_json(valid().dump(), "ok.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->encode("ab", false), (std::vector<int32_t>{2}));
}

TEST(TokenizerErrors, NotJson) {
  EXPECT_HAS(error_of_text("{\"model\": "), "not valid JSON");
  EXPECT_HAS(error_of_text("hello"), "not valid JSON");
  EXPECT_HAS(error_of_text(""), "not valid JSON");
  EXPECT_HAS(error_of_text(std::string("{\"a\": \"\xFF\"}")), "not valid JSON");
  EXPECT_HAS(error_of_text("[1, 2]"), "top level must be an object");
}

TEST(TokenizerErrors, MissingModel) {
  json j = valid();
  j.erase("model");
  EXPECT_HAS(error_of(j), "missing field \"model\"");
  j["model"] = nullptr;
  EXPECT_HAS(error_of(j), "missing field \"model\"");
}

TEST(TokenizerErrors, WrongTypes) {
  json j = valid();
  j["model"]["vocab"] = json::array({"a", "b"});
  EXPECT_HAS(error_of(j), "model.vocab: must be an object");
  j = valid();
  j["model"]["vocab"]["a"] = "zero";
  EXPECT_HAS(error_of(j), "token \"a\" must map to an integer id");
  j = valid();
  j["model"]["vocab"]["a"] = -1;
  EXPECT_HAS(error_of(j), "token \"a\" must map to an integer id");
  j = valid();
  j["model"]["merges"] = "a b";
  EXPECT_HAS(error_of(j), "model.merges: must be an array");
  j = valid();
  j["model"]["merges"] = json::array({42});
  EXPECT_HAS(error_of(j), "model.merges[0]: merge must be a string");
  j = valid();
  j["model"]["merges"] = json::array({"ab"});
  EXPECT_HAS(error_of(j), "is not two tokens separated by one space");
  j = valid();
  j["model"]["merges"] = json::array({json::array({"a", "b", "c"})});
  EXPECT_HAS(error_of(j), "merge must be a pair of strings");
  j = valid();
  j["model"]["ignore_merges"] = "yes";
  EXPECT_HAS(error_of(j), "model.ignore_merges: must be true or false");
  j = valid();
  j["added_tokens"] = json::object();
  EXPECT_HAS(error_of(j), "added_tokens: must be an array");
  j = valid();
  j["added_tokens"][0]["id"] = "3";
  EXPECT_HAS(error_of(j), "added_tokens[0].id");
  j = valid();
  j["pre_tokenizer"] = "ByteLevel";
  EXPECT_HAS(error_of(j), "pre_tokenizer: must be an object");
  j = valid();
  j["model"]["vocab"]["b"] = 0;
  EXPECT_HAS(error_of(j), "id 0 is used by two tokens");
}

TEST(TokenizerErrors, UnknownModelType) {
  json j = valid();
  j["model"]["type"] = "WordPiece";
  std::string m = error_of(j);
  EXPECT_HAS(m, "model type \"WordPiece\" is not supported");
  j["model"]["type"] = "Unigram";
  EXPECT_HAS(error_of(j), "model type \"Unigram\" is not supported");
  j = valid();
  j["model"]["byte_fallback"] = true;
  EXPECT_HAS(error_of(j), "byte_fallback is not supported");
  j = valid();
  j["model"]["dropout"] = 0.1;
  EXPECT_HAS(error_of(j), "dropout is not supported");
}

TEST(TokenizerErrors, MergeReferencingUnknownTokens) {
  json j = valid();
  j["model"]["merges"] = json::array({"a c"});
  EXPECT_HAS(error_of(j), "model.merges[0]: merge \"a c\" refers to \"c\", which is not in the vocabulary");
  j["model"]["merges"] = json::array({"a b", "b a"});
  EXPECT_HAS(error_of(j), "merges[1]: merge \"b a\" refers to \"ba\"");
}

TEST(TokenizerErrors, UnsupportedComponents) {
  json j = valid();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_HAS(error_of(j), "pre_tokenizer: pre-tokenizer type \"Whitespace\" is not supported");
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({{{"type", "ByteLevel"}}, {{"type", "Metaspace"}}})}};
  EXPECT_HAS(error_of(j), "pre_tokenizer.pretokenizers[1]: pre-tokenizer type \"Metaspace\"");
  j = valid();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}};
  EXPECT_HAS(error_of(j), "Split behavior \"MergedWithPrevious\" is not supported");
  j["pre_tokenizer"]["behavior"] = "Isolated";
  j["pre_tokenizer"]["pattern"]["Regex"] = "[a-z&&[^aeiou]]";
  EXPECT_HAS(error_of(j), "character class intersection");
  j["pre_tokenizer"]["pattern"]["Regex"] = "(unclosed";
  EXPECT_HAS(error_of(j), "does not compile");
  j = valid();
  j["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_HAS(error_of(j), "normalizer: normalizer type \"Lowercase\" is not supported");
  j = valid();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_HAS(error_of(j), "decoder: decoder type \"WordPiece\" is not supported");
  j["decoder"] = nullptr;
  EXPECT_HAS(error_of(j), "decoder: is missing or null");
  j = valid();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  EXPECT_HAS(error_of(j), "post-processor type \"RobertaProcessing\" is not supported");
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"special_tokens", json::object()}};
  EXPECT_HAS(error_of(j), "has no entry for \"<s>\"");
}

TEST(TokenizerErrors, MissingFileIsNotFound) {
  auto t = Tokenizer::load("/nonexistent/dir/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_HAS(std::string(t.status().message()), "/nonexistent/dir/tokenizer.json");
}

TEST(TokenizerErrors, HostileSizesAreRejected) {
  json j = valid();
  j["model"]["vocab"]["far"] = 2000000000;
  EXPECT_HAS(error_of(j), "must map to an integer id in [0, ");
  j = valid();
  j["model"]["vocab"]["far"] = 10000000;
  EXPECT_HAS(error_of(j), "ids are too sparse");
  j = valid();
  json seq = {{"type", "ByteLevel"}};
  for (int i = 0; i < 100; ++i) seq = {{"type", "Sequence"}, {"pretokenizers", json::array({seq})}};
  j["pre_tokenizer"] = seq;
  EXPECT_HAS(error_of(j), "nested too deeply");
}

}  // namespace
}  // namespace freekv
