// UTF-8 helpers for the tokenizer: decoding one character, repairing invalid input and finding the part
// of a byte buffer that is already decided (complete characters or bytes that can never complete).
//
// Invalid sequences are replaced by U+FFFD following the Unicode "maximal subpart" practice (Unicode
// §3.9, Table 3-7), which is what Rust's String::from_utf8_lossy and the WHATWG TextDecoder do, so our
// output matches the Hugging Face decoders byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace freekv::tok {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Result of looking at the bytes starting at one position.
struct Utf8Step {
  enum Kind { kValid, kInvalid, kIncomplete } kind;
  size_t length;   // kValid: bytes of the character; kInvalid: bytes of the maximal subpart (>= 1);
                   // kIncomplete: bytes present (a valid prefix that runs into the end of the buffer)
  char32_t code_point;  // kValid only
};

// Classifies the bytes at s[pos...]; pos < s.size().
Utf8Step utf8_step(std::string_view s, size_t pos);

bool is_valid_utf8(std::string_view s);

// Copies s, replacing every maximal invalid subpart (and a truncated tail) with U+FFFD.
std::string sanitize_utf8(std::string_view s);

// Appends to *out the longest prefix of s that is decided: complete characters are copied, invalid
// subparts become U+FFFD, and a valid-but-truncated tail is left alone. Returns the bytes consumed.
size_t append_decided_utf8(std::string_view s, std::string* out);

void append_utf8(char32_t cp, std::string* out);

// Decodes a valid UTF-8 string's code point at *pos and advances *pos (U+FFFD on invalid input).
char32_t next_code_point(std::string_view s, size_t* pos);

}  // namespace freekv::tok
