#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

namespace {
// Allowed range of the second byte for a given lead byte (Unicode Table 3-7); later continuation
// bytes are always 80..BF.
struct LeadInfo {
  int length;  // 0: never valid as a lead byte
  uint8_t lo, hi;
};

LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // excludes surrogates
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // <= U+10FFFF
  return {0, 0, 0};
}
}  // namespace

Utf8Step utf8_step(std::string_view s, size_t pos) {
  const uint8_t b0 = uint8_t(s[pos]);
  const LeadInfo info = lead_info(b0);
  if (info.length == 1) return {Utf8Step::kValid, 1, char32_t(b0)};
  if (info.length == 0) return {Utf8Step::kInvalid, 1, 0};
  char32_t cp = b0 & (0xFF >> (info.length + 1));
  for (int k = 1; k < info.length; ++k) {
    if (pos + k >= s.size()) return {Utf8Step::kIncomplete, size_t(k), 0};
    const uint8_t b = uint8_t(s[pos + k]);
    const uint8_t lo = k == 1 ? info.lo : 0x80, hi = k == 1 ? info.hi : 0xBF;
    if (b < lo || b > hi) return {Utf8Step::kInvalid, size_t(k), 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Utf8Step::kValid, size_t(info.length), cp};
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    Utf8Step st = utf8_step(s, i);
    if (st.kind != Utf8Step::kValid) return false;
    i += st.length;
  }
  return true;
}

size_t append_decided_utf8(std::string_view s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    Utf8Step st = utf8_step(s, i);
    if (st.kind == Utf8Step::kIncomplete) break;
    if (st.kind == Utf8Step::kValid) {
      out->append(s.substr(i, st.length));
    } else {
      out->append(kReplacementUtf8);
    }
    i += st.length;
  }
  return i;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t used = append_decided_utf8(s, &out);
  if (used < s.size()) out.append(kReplacementUtf8);  // a truncated tail is one maximal subpart
  return out;
}

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

char32_t next_code_point(std::string_view s, size_t* pos) {
  Utf8Step st = utf8_step(s, *pos);
  *pos += st.length;
  return st.kind == Utf8Step::kValid ? st.code_point : kReplacementChar;
}

}  // namespace freekv::tok
