#include "worker/chat/jinja_lexer.h"

#include "absl/strings/str_cat.h"
#include "worker/chat/jinja_value.h"
#include "worker/tokenizer/utf8.h"

namespace freekv::jinja {

using tok::append_utf8;
using tok::Utf8Step;
using tok::utf8_step;

size_t whitespace_length(std::string_view s, size_t pos) {
  const unsigned char c = s[pos];
  if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
  if (c < 0x80) return 0;
  const Utf8Step step = utf8_step(s, pos);
  if (step.kind != Utf8Step::kValid) return 0;
  const char32_t cp = step.code_point;
  const bool space = cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
                     cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
  return space ? step.length : 0;
}

std::string_view trim_start(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t n = whitespace_length(s, pos);
    if (n == 0) break;
    pos += n;
  }
  return s.substr(pos);
}

std::string_view trim_end(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    // Step back over one character (continuation bytes first) and test it.
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (whitespace_length(s, start) != end - start) break;
    end = start;
  }
  return s.substr(0, end);
}

namespace {

bool starts_line(std::string_view s, size_t pos) {
  if (pos == 0) return true;
  const char c = s[pos - 1];
  if (c == '\n' || c == '\r') return true;
  // U+2028 / U+2029 end lines too (E2 80 A8 / E2 80 A9).
  return pos >= 3 && s.substr(pos - 3, 2) == "\xE2\x80" && (s[pos - 1] == '\xA8' || s[pos - 1] == '\xA9');
}

// lstrip_blocks and trim_blocks as text rewrites over the whole template (so, like the reference renderer,
// inside string literals too), then the {% generation %} / {% endgeneration %} markers dropped.
std::string preprocess(std::string_view source, const LexOptions& options) {
  std::string text(source);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  auto is_tag_open = [](std::string_view s, size_t pos) {
    return pos + 1 < s.size() && s[pos] == '{' && (s[pos + 1] == '%' || s[pos + 1] == '#' || s[pos + 1] == '-');
  };
  if (options.lstrip_blocks) {
    std::string out;
    for (size_t pos = 0; pos < text.size();) {
      if (starts_line(text, pos)) {
        size_t end = pos;
        while (end < text.size() && (text[end] == ' ' || text[end] == '\t')) ++end;
        if (end > pos && is_tag_open(text, end)) pos = end;
      }
      out.push_back(text[pos++]);
    }
    text = std::move(out);
  }
  if (options.trim_blocks) {
    std::string out;
    for (size_t pos = 0; pos < text.size(); ++pos) {
      out.push_back(text[pos]);
      if (pos >= 1 && text[pos] == '}' && (text[pos - 1] == '#' || text[pos - 1] == '%' || text[pos - 1] == '-') &&
          pos + 1 < text.size() && text[pos + 1] == '\n') {
        ++pos;
      }
    }
    text = std::move(out);
  }
  std::string out;
  size_t copied = 0;  // text[copied, ...) is not yet in out
  for (size_t pos = text.find("{%"); pos != std::string::npos; pos = text.find("{%", pos + 2)) {
    size_t p = pos + 2;
    const bool strip_before = p < text.size() && text[p] == '-';
    if (strip_before) ++p;
    while (p < text.size() && whitespace_length(text, p) > 0) p += whitespace_length(text, p);
    if (text.compare(p, 3, "end") == 0) p += 3;
    if (text.compare(p, 10, "generation") != 0) continue;
    p += 10;
    while (p < text.size() && whitespace_length(text, p) > 0) p += whitespace_length(text, p);
    const bool strip_after = p < text.size() && text[p] == '-';
    if (strip_after) ++p;
    if (text.compare(p, 2, "%}") != 0) continue;
    p += 2;
    const size_t before_start = copied + trim_end(std::string_view(text).substr(copied, pos - copied)).size();
    size_t after_end = p;
    while (after_end < text.size() && whitespace_length(text, after_end) > 0) after_end += whitespace_length(text, after_end);
    out.append(text, copied, before_start - copied);
    if (!strip_before) out.append(text, before_start, pos - before_start);
    if (!strip_after) out.append(text, p, after_end - p);
    copied = after_end;
    pos = after_end - 2;
  }
  out.append(text, copied, std::string::npos);
  return out;
}

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      const bool outside = tokens_.empty() || tokens_.back().kind == TokenKind::kCloseStatement ||
                           tokens_.back().kind == TokenKind::kCloseExpression || after_comment_;
      after_comment_ = false;
      if (outside) {
        size_t end = pos_;
        while (end < src_.size() && !at_tag_open(end)) ++end;
        if (end > pos_) {
          push(TokenKind::kText, src_.substr(pos_, end - pos_));
          pos_ = end;
          continue;
        }
      }
      if (src_.compare(pos_, 2, "{#") == 0) {
        comment();
        continue;
      }
      if (src_.compare(pos_, 3, "{%-") == 0 || src_.compare(pos_, 3, "{{-") == 0) {
        strip_previous_text();
        push(src_[pos_ + 1] == '%' ? TokenKind::kOpenStatement : TokenKind::kOpenExpression, src_.substr(pos_, 2));
        pos_ += 3;
        curly_depth_ = 0;
        continue;
      }
      skip_whitespace();
      if (pos_ >= src_.size()) break;
      if (src_.compare(pos_, 3, "-%}") == 0 || src_.compare(pos_, 3, "-}}") == 0) {
        push(src_[pos_ + 1] == '%' ? TokenKind::kCloseStatement : TokenKind::kCloseExpression, src_.substr(pos_ + 1, 2));
        pos_ += 3;
        skip_whitespace();
        continue;
      }
      if (symbol()) continue;
      const char c = src_[pos_];
      if (c == '\'' || c == '"') {
        string_literal(c);
      } else if (is_digit(c)) {
        number("");
      } else if (is_word_char(c)) {
        size_t end = pos_;
        while (end < src_.size() && is_word_char(src_[end])) ++end;
        push(TokenKind::kIdentifier, src_.substr(pos_, end - pos_));
        pos_ = end;
      } else {
        fail(absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
    }
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw TemplateError(absl::StrCat("line ", line_at(pos_), ": ", message));
  }
  // Lines are counted forward from the last position asked about (tokens come in order).
  int line_at(size_t pos) const {
    if (pos < counted_to_) {
      counted_to_ = 0;
      counted_line_ = 1;
    }
    for (; counted_to_ < pos && counted_to_ < src_.size(); ++counted_to_) counted_line_ += src_[counted_to_] == '\n';
    return counted_line_;
  }
  bool at_tag_open(size_t pos) const {
    return src_[pos] == '{' && pos + 1 < src_.size() && (src_[pos + 1] == '%' || src_[pos + 1] == '{' || src_[pos + 1] == '#');
  }
  void push(TokenKind kind, std::string text) { tokens_.push_back(Token{kind, std::move(text), line_at(pos_)}); }
  void skip_whitespace() {
    while (pos_ < src_.size()) {
      const size_t n = whitespace_length(src_, pos_);
      if (n == 0) break;
      pos_ += n;
    }
  }
  void strip_previous_text() {
    if (tokens_.empty() || tokens_.back().kind != TokenKind::kText) return;
    tokens_.back().text = std::string(trim_end(tokens_.back().text));
    if (tokens_.back().text.empty()) tokens_.pop_back();
  }
  void comment() {
    size_t p = pos_ + 2;
    const bool strip_before = p < src_.size() && src_[p] == '-';
    const size_t close = src_.find("#}", p);
    if (close == std::string::npos) fail("a comment {# is never closed with #}");
    const bool strip_after = close > p && src_[close - 1] == '-';
    if (strip_before) strip_previous_text();
    pos_ = close + 2;
    after_comment_ = true;
    if (strip_after) skip_whitespace();
  }
  // Operators and delimiters; a '-' or '+' where a value is expected is a sign (of a number literal when
  // digits follow).
  bool symbol() {
    const char c = src_[pos_];
    if (c == '-' || c == '+') {
      const bool after_value = !tokens_.empty() && value_ends(tokens_.back());
      if (!after_value) {
        if (tokens_.empty() || tokens_.back().kind == TokenKind::kText) fail(absl::StrCat("unexpected '", std::string(1, c), "'"));
        if (pos_ + 1 < src_.size() && is_digit(src_[pos_ + 1])) {
          ++pos_;
          number(std::string(1, c));
        } else {
          push(TokenKind::kSign, std::string(1, c));
          ++pos_;
        }
        return true;
      }
    }
    static const char* const kSymbols[] = {"{%", "%}", "{{", "}}", "**", "//", "<=", ">=", "==", "!=", "(", ")", "{", "}",
                                           "[",  "]",  ",",  ".",  ":",  "|",  "<",  ">",  "+",  "-",  "~", "*", "/", "%", "="};
    for (const char* sym : kSymbols) {
      const std::string_view s(sym);
      if (src_.compare(pos_, s.size(), s) != 0) continue;
      if (s == "}}" && curly_depth_ > 0) continue;
      TokenKind kind = TokenKind::kOperator;
      if (s == "{%") kind = TokenKind::kOpenStatement;
      if (s == "%}") kind = TokenKind::kCloseStatement;
      if (s == "{{") kind = TokenKind::kOpenExpression;
      if (s == "}}") kind = TokenKind::kCloseExpression;
      if (kind == TokenKind::kOpenExpression) curly_depth_ = 0;
      if (s == "{") ++curly_depth_;
      if (s == "}") --curly_depth_;
      push(kind, std::string(s));
      pos_ += s.size();
      return true;
    }
    return false;
  }
  static bool value_ends(const Token& t) {
    return t.kind == TokenKind::kIdentifier || t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat ||
           t.kind == TokenKind::kString || (t.kind == TokenKind::kOperator && (t.text == ")" || t.text == "]"));
  }
  void number(std::string sign) {
    size_t end = pos_;
    while (end < src_.size() && is_digit(src_[end])) ++end;
    const bool after_dot = !tokens_.empty() && tokens_.back().kind == TokenKind::kOperator && tokens_.back().text == ".";
    bool is_float = false;
    if (!after_dot && end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
      is_float = true;
      ++end;
      while (end < src_.size() && is_digit(src_[end])) ++end;
    }
    push(is_float ? TokenKind::kFloat : TokenKind::kInteger, sign + src_.substr(pos_, end - pos_));
    pos_ = end;
  }
  void string_literal(char quote) {
    std::string value;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= src_.size()) fail("a string literal is never closed");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++p;
        continue;
      }
      if (++p >= src_.size()) fail("a string literal ends in a backslash");
      const char e = src_[p++];
      switch (e) {
        case 'n': value.push_back('\n'); break;
        case 't': value.push_back('\t'); break;
        case 'r': value.push_back('\r'); break;
        case 'b': value.push_back('\b'); break;
        case 'f': value.push_back('\f'); break;
        case 'v': value.push_back('\v'); break;
        case '\'': case '"': case '\\': value.push_back(e); break;
        case 'x':
        case 'u': {
          const size_t digits = e == 'x' ? 2 : 4;
          if (p + digits > src_.size()) fail(absl::StrCat("\\", std::string(1, e), " needs ", digits, " hex digits"));
          uint32_t cp = 0;
          for (size_t i = 0; i < digits; ++i) {
            const char h = src_[p + i];
            const int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) fail(absl::StrCat("\\", std::string(1, e), " needs ", digits, " hex digits"));
            cp = cp * 16 + uint32_t(d);
          }
          p += digits;
          append_utf8(char32_t(cp), &value);
          break;
        }
        default: fail(absl::StrCat("unknown escape \\", std::string(1, e), " in a string literal"));
      }
    }
    push(TokenKind::kString, std::move(value));
    pos_ = p + 1;
  }

  std::string src_;
  size_t pos_ = 0;
  mutable size_t counted_to_ = 0;
  mutable int counted_line_ = 1;
  int curly_depth_ = 0;
  bool after_comment_ = false;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexOptions& options) {
  return Lexer(preprocess(source, options)).run();
}

}  // namespace freekv::jinja
