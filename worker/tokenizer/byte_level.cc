#include "worker/tokenizer/byte_level.h"

#include <array>

#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

namespace {
struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // every mapped code point is below U+0144
  std::array<std::string, 256> utf8;   // pre-encoded characters for the hot path
  Tables() {
    to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? char32_t(b) : char32_t(256 + next++);
      to_char[b] = cp;
      to_byte[cp] = int16_t(b);
      append_utf8(cp, &utf8[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

char32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

int char_to_byte(char32_t cp) {
  const auto& t = tables();
  return cp < t.to_byte.size() ? t.to_byte[cp] : -1;
}

std::string bytes_to_byte_level(std::string_view raw) {
  const auto& t = tables();
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) out += t.utf8[c];
  return out;
}

bool byte_level_to_bytes(std::string_view token, std::string* out) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    int b = char_to_byte(next_code_point(token, &i));
    if (b < 0) return false;
    bytes.push_back(char(b));
  }
  out->append(bytes);
  return true;
}

}  // namespace freekv::tok
