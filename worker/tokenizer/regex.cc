#include "worker/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <cstdlib>

#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

namespace {

bool is_ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char32_t swap_case(char32_t c) { return c ^ 0x20; }


absl::Status unsupported(std::string_view what, std::string_view pattern) {
  return absl::InvalidArgumentError(
      absl::StrCat("regex construct ", std::string(what), " is not supported (pattern \"", std::string(pattern), "\")"));
}

// Copies an escape such as \p{L} or \x{1F600}: `i` points at the backslash.
// Returns the escape text (all of it) and advances i.
std::string take_braced_or_pair(std::string_view p, size_t* i) {
  size_t start = *i;
  size_t j = *i + 1;
  next_code_point(p, &j);  // the escaped character
  char kind = p[*i + 1];
  if ((kind == 'p' || kind == 'P' || kind == 'x' || kind == 'u') && j < p.size() && p[j] == '{') {
    size_t close = p.find('}', j);
    if (close != std::string_view::npos) j = close + 1;
  } else if (kind == 'x') {
    // \xHH: up to two hex digits
    for (int k = 0; k < 2 && j < p.size() && std::isxdigit(static_cast<unsigned char>(p[j])); ++k) ++j;
  }
  *i = j;
  return std::string(p.substr(start, j - start));
}

// Translates a bracket expression starting at p[*i] == '['; advances *i past its closing ']'.
absl::Status translate_class(std::string_view p, size_t* i, bool fold, std::string* out) {
  std::string body;
  std::vector<std::pair<char32_t, char32_t>> letter_ranges;  // literal ASCII letters, for folding
  size_t j = *i + 1;
  bool negated = false;
  if (j < p.size() && p[j] == '^') {
    negated = true;
    ++j;
  }
  bool first = true;
  char32_t last_literal = 0;
  bool have_last_literal = false;
  bool pending_range = false;
  auto add_literal = [&](char32_t c, const std::string& text) {
    if (pending_range && have_last_literal) {
      // completes "lo-hi"; the range replaces the fold entry made for lo alone
      char32_t lo = last_literal, hi = c;
      body += text;
      if (fold && is_ascii_letter(lo) && !letter_ranges.empty()) letter_ranges.pop_back();
      if (fold && lo <= hi) {
        for (char32_t a = lo; a <= hi && a < 128; ++a) {
          if (is_ascii_letter(a)) letter_ranges.push_back({a, a});
        }
      }
      pending_range = false;
      have_last_literal = false;
      return;
    }
    body += text;
    last_literal = c;
    have_last_literal = true;
    if (fold && is_ascii_letter(c)) letter_ranges.push_back({c, c});
  };
  while (true) {
    if (j >= p.size()) return unsupported("unterminated [", p);
    char c = p[j];
    if (c == ']' && !first) {
      ++j;
      break;
    }
    first = false;
    if (c == '[') {
      if (p.substr(j, 2) == "[:") {
        size_t close = p.find(":]", j + 2);
        if (close == std::string_view::npos) return unsupported("unterminated [:", p);
        body += std::string(p.substr(j, close + 2 - j));
        j = close + 2;
        have_last_literal = false;
        continue;
      }
      return unsupported("nested character class [...[...]...]", p);
    }
    if (c == '&' && p.substr(j, 2) == "&&") return unsupported("character class intersection &&", p);
    if (c == '-' && have_last_literal && j + 1 < p.size() && p[j + 1] != ']') {
      body += '-';
      pending_range = true;
      ++j;
      continue;
    }
    if (c == '\\') {
      if (j + 1 >= p.size()) return unsupported("trailing backslash", p);
      char e = p[j + 1];
      size_t k = j;
      std::string esc = take_braced_or_pair(p, &k);
      std::string rep;
      bool is_set = true;
      switch (e) {
        case 's': rep = "\\p{White_Space}"; break;
        case 'S': rep = "\\P{White_Space}"; break;
        case 'd': rep = "\\p{Nd}"; break;
        case 'D': rep = "\\P{Nd}"; break;
        case 'h': rep = "0-9A-Fa-f"; break;
        case 'H': return unsupported("\\H inside a character class", p);
        case 'v': rep = "\\x0B"; is_set = false; break;
        default: rep = esc; is_set = (e == 'p' || e == 'P' || e == 'w' || e == 'W');
      }
      j = k;
      if (is_set) {
        body += rep;
        have_last_literal = false;
        pending_range = false;
      } else if (e == 'x' || e == 'v' || e == 'n' || e == 'r' || e == 't' || e == 'f' || e == 'a' || e == 'e') {
        char32_t lit = 0;
        if (e == 'n') lit = '\n';
        else if (e == 'r') lit = '\r';
        else if (e == 't') lit = '\t';
        else if (e == 'f') lit = '\f';
        else if (e == 'v') lit = 0x0B;
        else if (e == 'a') lit = 0x07;
        else if (e == 'e') lit = 0x1B;
        else {
          std::string hex = esc.substr(2);
          if (!hex.empty() && hex.front() == '{') hex = hex.substr(1, hex.size() - 2);
          lit = char32_t(std::strtoul(hex.c_str(), nullptr, 16));
        }
        add_literal(lit, rep);
      } else {
        // an escaped literal such as \] \- \\ \. : ASCII punctuation
        add_literal(char32_t(static_cast<unsigned char>(e)), rep);
      }
      continue;
    }
    size_t k = j;
    char32_t cp = next_code_point(p, &k);
    add_literal(cp, std::string(p.substr(j, k - j)));
    j = k;
  }
  for (auto [lo, hi] : letter_ranges) {
    for (char32_t a = lo; a <= hi; ++a) body += char(swap_case(a));
  }
  *out += negated ? "[^" : "[";
  *out += body;
  *out += "]";
  *i = j;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> translate_oniguruma(std::string_view p) {
  if (!is_valid_utf8(p)) return absl::InvalidArgumentError("regex pattern is not valid UTF-8");
  std::string out;
  std::vector<bool> fold_stack;  // fold state to restore at each ')'
  bool fold = false;
  size_t i = 0;
  while (i < p.size()) {
    char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) return unsupported("trailing backslash", p);
      char e = p[i + 1];
      size_t k = i;
      std::string esc = take_braced_or_pair(p, &k);
      i = k;
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'd': out += "\\p{Nd}"; break;
        case 'D': out += "\\P{Nd}"; break;
        case 'h': out += "[0-9A-Fa-f]"; break;
        case 'H': out += "[^0-9A-Fa-f]"; break;
        case 'v': out += "\\x0B"; break;
        default: out += esc;  // \p{..}, \x{..}, \n, \b, escaped punctuation: same in both engines
      }
      continue;
    }
    if (c == '[') {
      FREEKV_RETURN_IF_ERROR(translate_class(p, &i, fold, &out));
      continue;
    }
    if (c == '(') {
      std::string_view rest = p.substr(i);
      fold_stack.push_back(fold);
      if (rest.substr(0, 4) == "(?i:") {
        fold = true;
        out += "(?:";
        i += 4;
      } else if (rest.substr(0, 5) == "(?-i:") {
        fold = false;
        out += "(?:";
        i += 5;
      } else if (rest.substr(0, 4) == "(?i)") {
        // applies to the rest of the enclosing group: undo the push, set the flag in place
        fold_stack.pop_back();
        fold = true;
        i += 4;
      } else if (rest.substr(0, 2) == "(?") {
        static constexpr std::string_view kGroupPrefixes[] = {"(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>"};
        bool known = false;
        for (std::string_view prefix : kGroupPrefixes) {
          if (rest.substr(0, prefix.size()) == prefix) {
            out += prefix;
            i += prefix.size();
            known = true;
            break;
          }
        }
        if (!known && rest.substr(0, 3) == "(?<") {
          // named group (?<name>...)
          size_t close = rest.find('>');
          if (close == std::string_view::npos) return unsupported("unterminated (?<", p);
          out += std::string(rest.substr(0, close + 1));
          i += close + 1;
          known = true;
        }
        if (!known) {
          return unsupported(absl::StrCat("inline option group \"", std::string(rest.substr(0, std::min<size_t>(5, rest.size()))), "\""), p);
        }
      } else {
        out += '(';
        ++i;
      }
      continue;
    }
    if (c == ')') {
      if (!fold_stack.empty()) {
        fold = fold_stack.back();
        fold_stack.pop_back();
      }
      out += ')';
      ++i;
      continue;
    }
    if (c == '^') {
      out += "(?m:^)";
      ++i;
      continue;
    }
    if (c == '$') {
      out += "(?m:$)";
      ++i;
      continue;
    }
    size_t k = i;
    char32_t cp = next_code_point(p, &k);
    if (fold && is_ascii_letter(cp)) {
      out += '[';
      out += char(cp);
      out += char(swap_case(cp));
      out += ']';
    } else {
      out += std::string(p.substr(i, k - i));
    }
    i = k;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::compile(const std::string& pcre_pattern, uint32_t options,
                                                      std::string_view original) {
  pcre2_compile_context* ctx = pcre2_compile_context_create(nullptr);
  // Oniguruma's '.' and line anchors know only '\n' as a line end.
  pcre2_set_newline(ctx, PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(),
                                   options | PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &err, &err_offset, ctx);
  pcre2_compile_context_free(ctx);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return absl::InvalidArgumentError(absl::StrCat("regex \"", std::string(original), "\" does not compile: ",
                                                   reinterpret_cast<const char*>(msg), " (at offset ",
                                                   err_offset, " of the translated pattern \"",
                                                   pcre_pattern, "\")"));
  }
  // JIT is several times faster; without it (unsupported CPU, no memory) the interpreter still works.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<Regex>(new Regex(code));
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::compile_oniguruma(std::string_view pattern) {
  FREEKV_ASSIGN_OR_RETURN(std::string translated, translate_oniguruma(pattern));
  return compile(translated, 0, pattern);
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::compile_literal(std::string_view literal) {
  if (!is_valid_utf8(literal)) return absl::InvalidArgumentError("split pattern is not valid UTF-8");
  return compile(std::string(literal), PCRE2_LITERAL, literal);
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

namespace {
// Per-thread matching state: match data for the whole-match offsets and a JIT stack larger than the
// 32 KiB default, so long inputs do not fall back to the interpreter.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  MatchState() {
    if (stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    if (stack != nullptr) pcre2_jit_stack_free(stack);
  }
};
}  // namespace

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
  thread_local MatchState state;
  auto* code = static_cast<const pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // Input was validated as UTF-8 by the caller, so PCRE2 need not check it again on every call.
    int rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, state.data,
                       state.context);
    }
    if (rc < 0) break;  // no match, or a matching error: the rest stays unmatched
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(state.data);
    size_t b = ov[0], e = ov[1];
    if (b > e || e > text.size()) break;  // \K tricks can report odd ranges; stop rather than misbehave
    out->emplace_back(b, e);
    if (e > b) {
      start = e;
    } else {
      if (e >= text.size()) break;
      size_t k = e;
      next_code_point(text, &k);
      start = k;
    }
  }
}

}  // namespace freekv::tok
