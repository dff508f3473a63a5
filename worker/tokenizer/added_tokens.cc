#include "worker/tokenizer/added_tokens.h"

#include <utf8proc.h>

#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

namespace {
// Unicode White_Space (what Rust's char::is_whitespace tests).
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_word_char(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(utf8proc_int32_t(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Start of the character that ends just before `pos`.
size_t prev_char_start(std::string_view s, size_t pos) {
  size_t p = pos - 1;
  while (p > 0 && (uint8_t(s[p]) & 0xC0) == 0x80 && pos - p < 4) --p;
  return p;
}
}  // namespace

absl::StatusOr<std::vector<AddedToken>> parse_added_tokens(const json& j, const JsonWhere& where) {
  if (!j.is_array()) return where.error(absl::StrCat("must be an array, got ", json_type_name(j)));
  std::vector<AddedToken> out;
  for (size_t i = 0; i < j.size(); ++i) {
    JsonWhere w = where.index(i);
    const json& t = j[i];
    AddedToken tok;
    FREEKV_ASSIGN_OR_RETURN(tok.content, json_string(t, "content", w));
    if (tok.content.empty()) return w.field("content").error("must not be empty");
    FREEKV_ASSIGN_OR_RETURN(const json* id, json_require(t, "id", w));
    if (!id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() >= (int64_t(1) << 24)) {
      return w.field("id").error("must be an integer id in [0, 16777215]");
    }
    tok.id = int32_t(id->get<int64_t>());
    FREEKV_ASSIGN_OR_RETURN(tok.special, json_bool(t, "special", false, w));
    FREEKV_ASSIGN_OR_RETURN(tok.single_word, json_bool(t, "single_word", false, w));
    FREEKV_ASSIGN_OR_RETURN(tok.lstrip, json_bool(t, "lstrip", false, w));
    FREEKV_ASSIGN_OR_RETURN(tok.rstrip, json_bool(t, "rstrip", false, w));
    // Hugging Face's default: special tokens are matched un-normalised, others normalised.
    FREEKV_ASSIGN_OR_RETURN(tok.normalized, json_bool(t, "normalized", !tok.special, w));
    out.push_back(std::move(tok));
  }
  return out;
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (auto [b, next] : nodes_[node].children) {
    if (b == byte) return next;
  }
  return -1;
}

void AddedTokenMatcher::add(std::string_view text, const AddedToken& token) {
  if (text.empty()) return;
  int32_t node = root_[uint8_t(text[0])];
  if (node < 0) {
    node = int32_t(nodes_.size());
    nodes_.emplace_back();
    root_[uint8_t(text[0])] = node;
  }
  for (size_t k = 1; k < text.size(); ++k) {
    int32_t next = child(node, uint8_t(text[k]));
    if (next < 0) {
      next = int32_t(nodes_.size());
      nodes_.emplace_back();
      nodes_[node].children.push_back({uint8_t(text[k]), next});
    }
    node = next;
  }
  // The first token with a given text wins, as later duplicates could not be told apart anyway.
  if (nodes_[node].token < 0) {
    nodes_[node].token = int32_t(tokens_.size());
    tokens_.push_back(token);
  }
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>* out) const {
  size_t plain_start = 0;  // start of the pending plain segment
  size_t i = 0;
  while (i < text.size()) {
    int32_t node = root_[uint8_t(text[i])];
    if (node < 0) {
      ++i;
      continue;
    }
    // Longest token starting at i.
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t k = i + 1;; ++k) {
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = k;
      }
      if (k >= text.size()) break;
      node = child(node, uint8_t(text[k]));
      if (node < 0) break;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t begin = i, end = best_end;
    if (tok.single_word) {
      bool left_ok = begin == 0 || [&] {
        size_t p = prev_char_start(text, begin);
        return !is_word_char(next_code_point(text, &p));
      }();
      bool right_ok = end == text.size() || [&] {
        size_t p = end;
        return !is_word_char(next_code_point(text, &p));
      }();
      if (!left_ok || !right_ok) {
        i = end;  // Hugging Face moves past a rejected match too
        continue;
      }
    }
    if (tok.lstrip) {
      while (begin > plain_start) {
        size_t p = prev_char_start(text, begin), q = p;
        if (!is_white_space(next_code_point(text, &q))) break;
        begin = p;
      }
    }
    if (tok.rstrip) {
      while (end < text.size()) {
        size_t q = end;
        if (!is_white_space(next_code_point(text, &q))) break;
        end = q;
      }
    }
    if (begin > plain_start) out->push_back({plain_start, begin, -1});
    out->push_back({begin, end, tok.id});
    plain_start = end;
    i = end;
  }
  if (plain_start < text.size()) out->push_back({plain_start, text.size(), -1});
}

}  // namespace freekv::tok
