// Added tokens: cut out of the raw text before normalisation and BPE, longest match first, with the
// lstrip / rstrip / single_word / normalized flags and the special flag for decode.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "worker/tokenizer/tokenizer.h"

namespace freekv {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

json added(int id, const std::string& content, bool special, json flags = json::object()) {
  json a = {{"id", id}, {"content", content}, {"special", special}, {"single_word", false},
            {"lstrip", false}, {"rstrip", false}, {"normalized", false}};
  a.update(flags);
  return a;
}

// Byte-level vocabulary of single characters: a..e, '<', '|', '>', 'Ġ', no merges. Ids 0..8.
json base_json(json added_tokens) {
  json vocab = json::object();
  const char* chars[] = {"a", "b", "c", "d", "e", "<", "|", ">", "Ġ"};
  for (int i = 0; i < 9; ++i) vocab[chars[i]] = i;
  return json{{"added_tokens", std::move(added_tokens)},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
}

std::unique_ptr<Tokenizer> load(const json& j) {
  auto t = Tokenizer::from_json(j.dump(), "added.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

TEST(AddedTokens, SplitOutBeforeBpeAnywhereInTheText) {
  auto t = load(base_json({added(9, "<|a|>", true), added(10, "<|b|>", false)}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("<|a|>", false), (Ids{9}));
  EXPECT_EQ(t->encode("a<|a|>b", false), (Ids{0, 9, 1}));
  EXPECT_EQ(t->encode("<|a|><|b|><|a|>", false), (Ids{9, 10, 9}));
  EXPECT_EQ(t->encode("c <|b|> d", false), (Ids{2, 8, 10, 8, 3}));
  // Incomplete or altered tokens are plain text.
  EXPECT_EQ(t->encode("<|a|", false), (Ids{5, 6, 0, 6}));
  EXPECT_EQ(t->encode("<|c|>", false), (Ids{5, 6, 2, 6, 7}));
  EXPECT_EQ(t->encode("<<|a|>>", false), (Ids{5, 9, 7}));
}

TEST(AddedTokens, LongestMatchWins) {
  auto t = load(base_json({added(9, "<|a", true), added(10, "<|a|>", true), added(11, "a|>", true)}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("<|a|>", false), (Ids{10}));
  EXPECT_EQ(t->encode("<|ab", false), (Ids{9, 1}));
  EXPECT_EQ(t->encode("ba|>", false), (Ids{1, 11}));
  // Leftmost first: "<|a" starts before "a|>" and takes the 'a'.
  EXPECT_EQ(t->encode("<|a|", false), (Ids{9, 6}));
}

TEST(AddedTokens, SpecialFlagDrivesDecodeSkipping) {
  auto t = load(base_json({added(9, "<|a|>", true), added(10, "<|b|>", false)}));
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->is_special(9));
  EXPECT_FALSE(t->is_special(10));
  EXPECT_FALSE(t->is_special(0));
  EXPECT_FALSE(t->is_special(-1));
  EXPECT_FALSE(t->is_special(1000));
  Ids ids = t->encode("a<|a|>b<|b|>c", false);
  EXPECT_EQ(t->decode(ids, false), "a<|a|>b<|b|>c");
  EXPECT_EQ(t->decode(ids, true), "ab<|b|>c");
  EXPECT_EQ(t->token_to_id("<|a|>"), 9);
  EXPECT_EQ(t->token_to_id("Ġ"), 8);
  EXPECT_EQ(t->token_to_id("nope"), -1);
  EXPECT_EQ(t->token_bytes(10), "<|b|>");
  EXPECT_EQ(t->token_bytes(8), " ");
  EXPECT_EQ(t->vocab_size(), 11);
}

TEST(AddedTokens, LstripAndRstripSwallowWhitespace) {
  auto t = load(base_json({added(9, "<|a|>", true, {{"lstrip", true}}), added(10, "<|b|>", true, {{"rstrip", true}})}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("c  <|a|> d", false), (Ids{2, 9, 8, 3}));
  EXPECT_EQ(t->encode("c <|b|>  d", false), (Ids{2, 8, 10, 3}));
  EXPECT_EQ(t->encode("c\t\n<|a|>", false), (Ids{2, 9}));
}

TEST(AddedTokens, SingleWordMatchesOnlyWholeWords) {
  auto t = load(base_json({added(9, "ab", false, {{"single_word", true}})}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("ab", false), (Ids{9}));
  EXPECT_EQ(t->encode("c ab d", false), (Ids{2, 8, 9, 8, 3}));
  EXPECT_EQ(t->encode("cab", false), (Ids{2, 0, 1}));
  EXPECT_EQ(t->encode("abc", false), (Ids{0, 1, 2}));
  EXPECT_EQ(t->encode("<ab>", false), (Ids{5, 9, 7}));
}

TEST(AddedTokens, NormalizedTokensMatchAfterNormalisation) {
  // Content "é" written decomposed; with NFC the token becomes the composed form and matches both
  // spellings in the text. An un-normalised token only matches its exact bytes.
  json j = base_json({added(9, "e\xCC\x81", false, {{"normalized", true}}), added(10, "d\xCC\x81", false)});
  j["normalizer"] = {{"type", "NFC"}};
  auto t = load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("\xC3\xA9", false), (Ids{9}));      // é precomposed
  EXPECT_EQ(t->encode("e\xCC\x81", false), (Ids{9}));     // e + combining acute
  EXPECT_EQ(t->encode("ad\xCC\x81", false), (Ids{0, 10}));  // raw match, before NFC could touch it
}

TEST(AddedTokens, DuplicateContentsAndOverlappingIds) {
  // An added token may reuse a model id (as GPT-2's <|endoftext|> does): it decodes as the content.
  auto t = load(base_json({added(3, "<|d|>", true)}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("<|d|>", false), (Ids{3}));
  EXPECT_EQ(t->token_bytes(3), "<|d|>");
  EXPECT_EQ(t->vocab_size(), 9);
}

}  // namespace
}  // namespace freekv
