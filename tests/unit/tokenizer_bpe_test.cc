// BPE merges, pre-tokenizers, normaliser and post-processor on small handmade tokenizer.json files,
// where the expected ids can be worked out by hand.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "worker/tokenizer/regex.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// A byte-level BPE over the given tokens (byte-level text: 'Ġ' is a space) and merges.
json make_json(const std::vector<std::string>& tokens, const json& merges) {
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

std::unique_ptr<Tokenizer> load(const json& j) {
  auto t = Tokenizer::from_json(j.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

// ids:                          0    1    2    3    4     5     6      7
const std::vector<std::string> kTokens = {"a", "b", "c", "Ġ", "ab", "bc", "abc", "Ġa"};

TEST(Bpe, MergesApplyInRankOrder) {
  auto t = load(make_json(kTokens, {"a b", "ab c", "Ġ a"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("abc", false), (Ids{6}));
  EXPECT_EQ(t->encode("cab", false), (Ids{2, 4}));
  // " abc" is the piece "Ġabc": "a b" (rank 0) and "ab c" (rank 1) fire before "Ġ a" could.
  EXPECT_EQ(t->encode("abc abc", false), (Ids{6, 3, 6}));
  EXPECT_EQ(t->encode(" ac", false), (Ids{7, 2}));
  // "b c" is not a merge here, so a word "bc" stays two tokens.
  EXPECT_EQ(t->encode("bc", false), (Ids{1, 2}));
}

TEST(Bpe, LowerRankWinsOverPosition) {
  // "b c" ranks before "a b": in "abc" the right pair merges first and "ab" never forms.
  auto t = load(make_json(kTokens, {"b c", "a b"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("abc", false), (Ids{0, 5}));
  auto u = load(make_json(kTokens, {"a b", "b c"}));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->encode("abc", false), (Ids{4, 2}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
  auto t = load(make_json({"a", "aa", "aaaa"}, {"a a", "aa aa"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("aaa", false), (Ids{1, 0}));
  EXPECT_EQ(t->encode("aaaa", false), (Ids{2}));
  EXPECT_EQ(t->encode("aaaaa", false), (Ids{2, 0}));
  EXPECT_EQ(t->encode("aaaaaaa", false), (Ids{2, 1, 0}));
}

TEST(Bpe, MergesAsPairsEqualMergesAsStrings) {
  auto s = load(make_json(kTokens, {"a b", "ab c", "Ġ a"}));
  auto p = load(make_json(kTokens, json::array({{"a", "b"}, {"ab", "c"}, {"Ġ", "a"}})));
  ASSERT_TRUE(s && p);
  for (const char* text : {"abc", "a b c", " abcab", "cba  ab"}) EXPECT_EQ(s->encode(text, false), p->encode(text, false));
}

TEST(Bpe, IgnoreMergesEmitsVocabularyWordsWhole) {
  // "abc" is in the vocabulary but no merge builds it from "ab" + "c".
  json j = make_json(kTokens, {"a b", "b c"});
  auto plain = load(j);
  j["model"]["ignore_merges"] = true;
  auto ignoring = load(j);
  ASSERT_TRUE(plain && ignoring);
  EXPECT_EQ(plain->encode("abc", false), (Ids{4, 2}));
  EXPECT_EQ(ignoring->encode("abc", false), (Ids{6}));
  EXPECT_EQ(ignoring->encode("abcc", false), (Ids{4, 2, 2}));  // not in the vocabulary: merges run
}

TEST(Bpe, UnknownCharactersAreDroppedOrBecomeUnk) {
  json j = make_json({"a", "b", "<unk>"}, json::array());
  auto dropping = load(j);
  ASSERT_TRUE(dropping);
  EXPECT_EQ(dropping->encode("axxb", false), (Ids{0, 1}));
  j["model"]["unk_token"] = "<unk>";
  auto unk = load(j);
  EXPECT_EQ(unk->encode("axxb", false), (Ids{0, 2, 2, 1}));
  j["model"]["fuse_unk"] = true;
  auto fused = load(j);
  EXPECT_EQ(fused->encode("axxb", false), (Ids{0, 2, 1}));
}

TEST(Bpe, ByteLevelGpt2RegexAndPrefixSpace) {
  // Every byte of "Hi" and space exists; no merges: one id per byte, split by the GPT-2 pattern.
  auto t = load(make_json({"H", "i", "Ġ", "ĠHi", "Hi"}, {"H i", "Ġ Hi"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("Hi Hi", false), (Ids{4, 3}));
  EXPECT_EQ(t->encode("Hi  Hi", false), (Ids{4, 2, 3}));  // "\s+(?!\S)" leaves one space for the word
  json j = make_json({"H", "i", "Ġ", "ĠHi", "Hi"}, {"H i", "Ġ Hi"});
  j["pre_tokenizer"]["add_prefix_space"] = true;
  auto prefixed = load(j);
  EXPECT_EQ(prefixed->encode("Hi Hi", false), (Ids{3, 3}));
  EXPECT_EQ(prefixed->encode(" Hi", false), (Ids{3}));  // already starts with a space
}

TEST(Bpe, SplitThenByteLevel) {
  json j = make_json({"1", "2", "3", "12", "123", "Ġ"}, {"1 2", "12 3"});
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,2}"}}}, {"behavior", "Isolated"}, {"invert", false}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  auto t = load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("123", false), (Ids{3, 2}));  // "12" | "3": the merge "12 3" cannot cross pieces
  EXPECT_EQ(t->encode("12 3", false), (Ids{3, 5, 2}));
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  auto removed = load(j);
  EXPECT_EQ(removed->encode("12 3", false), (Ids{5}));
}

TEST(Bpe, NfcNormalizerComposesBeforeBpe) {
  // 'é' is bytes C3 A9, shown as "Ã©" in the byte-level alphabet.
  // e + U+0301 is 65 CC 81, "eÌģ" (byte 0x81 is shown as U+0123).
  json j = make_json({"e", "Ã", "©", "Ì", "ģ", "Ã©"}, {"Ã ©"});
  auto raw = load(j);
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
  auto nfc = load(j);
  ASSERT_TRUE(raw && nfc);
  EXPECT_EQ(nfc->encode("e\xCC\x81", false), (Ids{5}));   // e + U+0301 -> é
  EXPECT_EQ(nfc->encode("\xC3\xA9", false), (Ids{5}));
  EXPECT_EQ(raw->encode("e\xCC\x81", false), (Ids{0, 3, 4}));
}

TEST(Bpe, TemplateProcessingAddsSpecialIdsOnlyWhenAsked) {
  json j = make_json(kTokens, {"a b"});
  j["added_tokens"] = json::array({{{"id", 8}, {"content", "<s>"}, {"special", true}},
                                   {{"id", 9}, {"content", "</s>"}, {"special", true}}});
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       json::array({{{"type", "ByteLevel"}},
                    {{"type", "TemplateProcessing"},
                     {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                             {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
                     {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {8}}}}, {"</s>", {{"id", "</s>"}, {"ids", {9}}}}}}}})}};
  auto t = load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("ab", true), (Ids{8, 4, 9}));
  EXPECT_EQ(t->encode("ab", false), (Ids{4}));
  EXPECT_EQ(t->encode("", true), (Ids{8, 9}));
  EXPECT_EQ(t->decode({8, 4, 9}, true), "ab");
  EXPECT_EQ(t->decode({8, 4, 9}, false), "<s>ab</s>");
  EXPECT_EQ(t->vocab_size(), 10);
}

TEST(Bpe, InvalidUtf8InputIsEncodedAsReplacementCharacters) {
  // U+FFFD is EF BF BD, "ï¿½" in the byte-level alphabet.
  auto t = load(make_json({"a", "ï", "¿", "½", "ï¿", "ï¿½"}, {"ï ¿", "ï¿ ½"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("a\xFF" "a", false), (Ids{0, 5, 0}));
  EXPECT_EQ(t->encode("a\xE2\x82", false), (Ids{0, 5}));  // a truncated character is one U+FFFD
  EXPECT_EQ(t->encode("a\xEF\xBF\xBD", false), (Ids{0, 5}));
  EXPECT_EQ(t->decode({0, 5, 0}, false), "a\xEF\xBF\xBD" "a");
}

TEST(Regex, TranslationOfOnigurumaConstructs) {
  auto tr = [](const char* p) { return tok::translate_oniguruma(p).value(); };
  EXPECT_EQ(tr("\\s+(?!\\S)"), "\\p{White_Space}+(?!\\P{White_Space})");
  EXPECT_EQ(tr("[^\\s\\p{L}]"), "[^\\p{White_Space}\\p{L}]");
  EXPECT_EQ(tr("(?i:'s|'t)"), "(?:'[sS]|'[tT])");
  EXPECT_EQ(tr("(?i:[a-c])x"), "(?:[a-cABC])x");
  EXPECT_EQ(tr("\\h\\d"), "[0-9A-Fa-f]\\p{Nd}");
  EXPECT_EQ(tr("^a$"), "(?m:^)a(?m:$)");
  EXPECT_FALSE(tok::translate_oniguruma("[a-z&&[^aeiou]]").ok());
  EXPECT_FALSE(tok::translate_oniguruma("(?m).").ok());
}

TEST(Regex, ContractionsFoldAsciiOnly) {
  auto re = tok::Regex::compile_oniguruma("(?i:'s|'ll)").value();
  std::vector<std::pair<size_t, size_t>> m;
  re->find_all("it'S we'LL x'ſ y'\u212A", &m);  // U+017F long s and U+212A Kelvin do not fold
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{2, 4}));
  EXPECT_EQ(m[1], (std::pair<size_t, size_t>{7, 10}));
}

TEST(Regex, WhiteSpaceMatchesUnicodeProperty) {
  auto re = tok::Regex::compile_oniguruma("\\s+").value();
  std::vector<std::pair<size_t, size_t>> m;
  // NEL (U+0085) is White_Space; ZWSP (U+200B) and BOM (U+FEFF) are not.
  re->find_all("a\xC2\x85" "b\xE2\x80\x8B" "c\xEF\xBB\xBF" "d", &m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{1, 3}));
}

TEST(Regex, LongRunsDoNotExhaustTheMatcher) {
  auto re = tok::Regex::compile_oniguruma(
                R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)")
                .value();
  for (const std::string& text : {std::string(1 << 20, 'a'), std::string(1 << 20, ' ') + "x",
                                  std::string(1 << 18, '\n'), std::string(1 << 18, '!')}) {
    std::vector<std::pair<size_t, size_t>> m;
    re->find_all(text, &m);
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(m.back().second, text.size());  // the whole text was covered
  }
}

}  // namespace
}  // namespace freekv
