// make_bpe_tokenizer_json: deterministic, exact vocabulary size, specials at the top, loadable.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/trainer_corpus.h"

namespace freekv {
namespace {

TEST(Trainer, RejectsSizesOutOfRange) {
  for (int size : {-1, 0, 256, 258, 263, (1 << 18) + 1}) {
    auto j = make_bpe_tokenizer_json(size);
    ASSERT_FALSE(j.ok()) << size;
    EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(j.status().message()).find("vocab_size"), std::string::npos) << j.status();
  }
  EXPECT_TRUE(make_bpe_tokenizer_json(264).ok());
}

TEST(Trainer, IsDeterministic) {
  EXPECT_EQ(make_bpe_tokenizer_json(700).value(), make_bpe_tokenizer_json(700).value());
  // A smaller vocabulary is a prefix of a larger one: same merges, in the same order.
  auto small = nlohmann::json::parse(make_bpe_tokenizer_json(400).value());
  auto large = nlohmann::json::parse(make_bpe_tokenizer_json(900).value());
  for (size_t i = 0; i < small["model"]["merges"].size(); ++i) {
    ASSERT_EQ(small["model"]["merges"][i], large["model"]["merges"][i]) << i;
  }
}

TEST(Trainer, ExactSizesWithSpecialsOnTop) {
  // 512 and 2048 come from the corpus alone; 6000 needs the made-up words.
  for (int size : {300, 512, 2048, 6000}) {
    auto text = make_bpe_tokenizer_json(size);
    ASSERT_TRUE(text.ok()) << text.status();
    auto t = Tokenizer::from_json(*text, "generated");
    ASSERT_TRUE(t.ok()) << t.status();
    const Tokenizer& tok = **t;
    EXPECT_EQ(tok.vocab_size(), size);
    EXPECT_EQ(tok.token_to_id("<|begin_of_text|>"), size - 2);
    EXPECT_EQ(tok.token_to_id("<|end_of_text|>"), size - 1);
    EXPECT_TRUE(tok.is_special(size - 2));
    EXPECT_TRUE(tok.is_special(size - 1));
    EXPECT_FALSE(tok.is_special(size - 3));
    EXPECT_EQ(tok.token_bytes('A'), "A");  // ids 0..255 are the bytes
    std::vector<int32_t> ids = tok.encode("Hello world", true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], size - 2);
    EXPECT_EQ(tok.decode(ids, true), "Hello world");
    EXPECT_EQ(tok.decode(ids, false), "<|begin_of_text|>Hello world");
    EXPECT_EQ(tok.encode("x<|end_of_text|>", false).back(), size - 1);
  }
}

TEST(Trainer, CompressesItsOwnCorpusAndRoundTrips) {
  auto t = Tokenizer::from_json(make_bpe_tokenizer_json(2048).value(), "generated");
  ASSERT_TRUE(t.ok());
  std::string_view corpus = tok::trainer_corpus();
  std::vector<int32_t> ids = (*t)->encode(corpus, false);
  EXPECT_LT(ids.size(), corpus.size() / 3) << "2048 tokens should give better than 3 bytes per token";
  EXPECT_EQ((*t)->decode(ids, false), corpus);
}

TEST(Trainer, LearnsTheCallersCorpus) {
  // A corpus made of one rare word: its pieces merge into one token, which the built-in corpus never
  // makes; the vocabulary is still exact and specials on top.
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += " zyxwvut qoph.";
  auto text = make_bpe_tokenizer_json(400, corpus);
  ASSERT_TRUE(text.ok()) << text.status();
  auto t = Tokenizer::from_json(*text, "generated");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 400);
  EXPECT_EQ((*t)->encode(" zyxwvut", false).size(), 1u);
  EXPECT_EQ((*t)->token_to_id("<|end_of_text|>"), 399);
  auto builtin = Tokenizer::from_json(make_bpe_tokenizer_json(400).value(), "generated");
  ASSERT_TRUE(builtin.ok());
  EXPECT_GT((*builtin)->encode(" zyxwvut", false).size(), 1u);
  EXPECT_EQ(make_bpe_tokenizer_json(400, corpus).value(), *text);  // deterministic
}

}  // namespace
}  // namespace freekv
