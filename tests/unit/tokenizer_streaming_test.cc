// StreamingDetokenizer: pieces are always complete UTF-8, characters split across tokens are held
// back, broken bytes come out as U+FFFD, and the pieces add up to decode() of the whole sequence.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "worker/tokenizer/byte_level.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace freekv {
namespace {

using json = nlohmann::json;
const std::string kFffd = "\xEF\xBF\xBD";

// Ids 0..255: one token per byte. 256: "€" as one token. 257: special "<eos>".
std::unique_ptr<Tokenizer> byte_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::bytes_to_byte_level(std::string(1, char(b)))] = b;
  vocab[tok::bytes_to_byte_level("€")] = 256;
  json j = {{"added_tokens", json::array({{{"id", 257}, {"content", "<eos>"}, {"special", true}}})},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", false}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  auto t = Tokenizer::from_json(j.dump(), "bytes.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

std::vector<std::string> stream(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special = true) {
  StreamingDetokenizer d(t, skip_special);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(d.push(id));
  out.push_back(d.flush());
  return out;
}

TEST(Streaming, HoldsSplitCharactersUntilComplete) {
  auto t = byte_tokenizer();
  // "a€b" with € (E2 82 AC) split over three byte tokens.
  EXPECT_EQ(stream(*t, {'a', 0xE2, 0x82, 0xAC, 'b'}), (std::vector<std::string>{"a", "", "", "€", "b", ""}));
  // 😀 is F0 9F 98 80.
  EXPECT_EQ(stream(*t, {0xF0, 0x9F, 0x98, 0x80}), (std::vector<std::string>{"", "", "", "😀", ""}));
  // A whole character in one token passes straight through.
  EXPECT_EQ(stream(*t, {256, 'x'}), (std::vector<std::string>{"€", "x", ""}));
}

TEST(Streaming, InvalidBytesBecomeReplacementCharacters) {
  auto t = byte_tokenizer();
  // A lone continuation byte can never become valid: it is emitted at once.
  EXPECT_EQ(stream(*t, {0x80, 'a'}), (std::vector<std::string>{kFffd, "a", ""}));
  // A lead byte followed by ASCII: replaced when the ASCII byte shows it is broken.
  EXPECT_EQ(stream(*t, {0xE2, 0x82, 'a'}), (std::vector<std::string>{"", "", kFffd + "a", ""}));
  // Truncated at the end: flush completes it with U+FFFD.
  EXPECT_EQ(stream(*t, {'a', 0xF0, 0x9F}), (std::vector<std::string>{"a", "", "", kFffd}));
  // Bytes that are never valid UTF-8.
  EXPECT_EQ(stream(*t, {0xFF, 0xC0, 0xAF}), (std::vector<std::string>{kFffd, kFffd, kFffd, ""}));
  // An overlong start (E0 80): E0 alone is the maximal subpart.
  EXPECT_EQ(stream(*t, {0xE0, 0x80}), (std::vector<std::string>{"", kFffd + kFffd, ""}));
}

TEST(Streaming, SpecialTokensAndUnknownIds) {
  auto t = byte_tokenizer();
  EXPECT_EQ(stream(*t, {'a', 257, 'b'}, true), (std::vector<std::string>{"a", "", "b", ""}));
  EXPECT_EQ(stream(*t, {'a', 257, 'b'}, false), (std::vector<std::string>{"a", "<eos>", "b", ""}));
  // A special token in the middle of a split character: the character still completes (skipped) or is
  // broken by the token's bytes (kept).
  EXPECT_EQ(stream(*t, {0xE2, 257, 0x82, 0xAC}, true), (std::vector<std::string>{"", "", "", "€", ""}));
  EXPECT_EQ(stream(*t, {0xE2, 257, 0x82, 0xAC}, false),
            (std::vector<std::string>{"", kFffd + "<eos>", kFffd, kFffd, ""}));
  EXPECT_EQ(stream(*t, {-1, 5000, 'z'}), (std::vector<std::string>{"", "", "z", ""}));
}

TEST(Streaming, PiecesAlwaysValidAndSumToDecode) {
  auto t = byte_tokenizer();
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids;
    int n = int(rng() % 12);
    for (int k = 0; k < n; ++k) {
      // Mostly bytes of real characters, sometimes random bytes or the special token.
      switch (rng() % 4) {
        case 0: ids.push_back(int32_t(rng() % 258)); break;
        case 1: for (unsigned char c : std::string("é")) ids.push_back(c); break;
        case 2: for (unsigned char c : std::string("😀")) ids.push_back(c); break;
        default: ids.push_back(int32_t(rng() % 128)); break;
      }
    }
    for (bool skip : {true, false}) {
      std::string joined;
      for (const std::string& piece : stream(*t, ids, skip)) {
        EXPECT_TRUE(tok::is_valid_utf8(piece));
        joined += piece;
      }
      EXPECT_EQ(joined, t->decode(ids, skip));
    }
  }
}

TEST(Decode, BrokenBytesMatchLossyUtf8) {
  auto t = byte_tokenizer();
  EXPECT_EQ(t->decode({'a', 0xE2, 0x82}, false), "a" + kFffd);
  EXPECT_EQ(t->decode({0xE2, 0x82, 0xAC}, false), "€");
  EXPECT_EQ(t->decode({}, false), "");
}

}  // namespace
}  // namespace freekv
