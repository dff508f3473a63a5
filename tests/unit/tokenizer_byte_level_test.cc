// Byte-level alphabet and UTF-8 repair: the two tables every encode and decode goes through.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "worker/tokenizer/byte_level.h"
#include "worker/tokenizer/utf8.h"

namespace freekv::tok {
namespace {

TEST(ByteLevel, AlphabetIsABijectionOnto256PrintableCharacters) {
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    char32_t c = byte_to_char(uint8_t(b));
    EXPECT_TRUE(seen.insert(c).second) << "byte " << b << " shares its character";
    EXPECT_EQ(char_to_byte(c), b);
    EXPECT_GT(c, 0x20u) << "byte " << b << " maps to a control or space";
  }
  EXPECT_EQ(seen.size(), 256u);
}

TEST(ByteLevel, KnownCharacters) {
  EXPECT_EQ(byte_to_char('A'), U'A');
  EXPECT_EQ(byte_to_char('!'), U'!');
  EXPECT_EQ(byte_to_char('~'), U'~');
  EXPECT_EQ(byte_to_char(0xA1), U'\u00A1');
  EXPECT_EQ(byte_to_char(0xFF), U'\u00FF');
  // The 68 others take U+0100.. in byte order: 0x00..0x20, then 0x7F..0xA0, then 0xAD.
  EXPECT_EQ(byte_to_char(0x00), U'\u0100');
  EXPECT_EQ(byte_to_char('\n'), U'\u010A');  // 'Ċ'
  EXPECT_EQ(byte_to_char(' '), U'\u0120');   // 'Ġ'
  EXPECT_EQ(byte_to_char(0x7F), U'\u0121');
  EXPECT_EQ(byte_to_char(0xA0), U'\u0142');
  EXPECT_EQ(byte_to_char(0xAD), U'\u0143');
  EXPECT_EQ(char_to_byte(U'\u0144'), -1);
  EXPECT_EQ(char_to_byte(U'\u00AD'), -1);  // soft hyphen itself is not in the alphabet
  EXPECT_EQ(char_to_byte(U'中'), -1);
}

TEST(ByteLevel, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  std::string mapped = bytes_to_byte_level(all);
  EXPECT_TRUE(is_valid_utf8(mapped));
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(mapped, &back));
  EXPECT_EQ(back, all);
  EXPECT_EQ(bytes_to_byte_level(" hello\n"), "\xC4\xA0hello\xC4\x8A");  // "Ġhello Ċ"
}

TEST(ByteLevel, RejectsCharactersOutsideTheAlphabet) {
  std::string out = "keep";
  EXPECT_FALSE(byte_level_to_bytes("a b", &out));  // a real space is not a byte-level character
  EXPECT_FALSE(byte_level_to_bytes("中", &out));
  EXPECT_EQ(out, "keep");
}

TEST(Utf8, SanitizeReplacesMaximalSubparts) {
  const std::string r(kReplacementUtf8);
  EXPECT_EQ(sanitize_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(sanitize_utf8("é中😀"), "é中😀");
  EXPECT_EQ(sanitize_utf8("\x80"), r);                        // lone continuation byte
  EXPECT_EQ(sanitize_utf8("a\xF0\x9F\x98"), "a" + r);         // truncated 4-byte char: one U+FFFD
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98" "b"), r + "b");      // broken by an ASCII byte
  EXPECT_EQ(sanitize_utf8("\xE0\x80"), r + r);                // overlong: E0 needs A0..BF next
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), r + r);                // C0 is never a lead byte
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), r + r + r);        // UTF-16 surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("\xFF\xFE"), r + r);
  EXPECT_EQ(sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));  // NUL is valid
}

TEST(Utf8, DecidedPrefixHoldsBackOnlyATruncatedTail) {
  std::string out;
  EXPECT_EQ(append_decided_utf8("ab\xE2\x82", &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_decided_utf8("\xE2\x82\xAC", &out), 3u);
  EXPECT_EQ(out, "€");
  out.clear();
  EXPECT_EQ(append_decided_utf8("\xE2\x82" "x", &out), 3u);  // can never complete: decided now
  EXPECT_EQ(out, std::string(kReplacementUtf8) + "x");
}

TEST(Utf8, AppendAndDecodeCodePoints) {
  for (char32_t cp : {U'\0', U'a', U'\u00E9', U'\u20AC', U'\U0001F600', U'\U0010FFFF'}) {
    std::string s;
    append_utf8(cp, &s);
    size_t pos = 0;
    EXPECT_EQ(next_code_point(s, &pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

}  // namespace
}  // namespace freekv::tok
