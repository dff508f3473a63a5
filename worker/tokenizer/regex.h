// Pre-tokenizer regular expressions. tokenizer.json patterns are written for Oniguruma (the engine of
// the Rust `tokenizers` crate); we run them with PCRE2 (UTF + UCP) after a small translation of the
// constructs whose meaning differs between the two engines:
//   \s \S      Oniguruma: the Unicode White_Space property. PCRE2's \s differs (e.g. U+0085), so
//              they become \p{White_Space} / \P{White_Space}.
//   \h \H      Oniguruma: hex digit. PCRE2: horizontal space. Become [0-9A-Fa-f] / its complement.
//   \d \D \v   become \p{Nd}, \P{Nd}, \x0B (PCRE2's \v is a class of vertical space).
//   (?i:...)   ASCII case folding only, as the Hugging Face reference (tokenizers.js) does, so "'ſ" is
//              not the contraction "'s" (PCRE2's caseless mode would fold U+017F to 's').
//   ^ $        line anchors, as in Oniguruma's Ruby syntax.
// Possessive quantifiers and atomic groups keep their Oniguruma meaning (PCRE2 has both). Constructs
// with no faithful translation (class intersection &&, nested classes, other inline options) are
// errors naming the construct, never silently approximated.
//
// Unicode tables: PCRE2 10.42 knows Unicode 14. \p{L} / \p{N} differ from newer references only for
// letters and digits assigned in Unicode 15 and later.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace freekv::tok {

// Oniguruma pattern -> PCRE2 pattern (exposed for tests).
absl::StatusOr<std::string> translate_oniguruma(std::string_view pattern);

class Regex {
 public:
  // From a tokenizer.json {"Regex": ...} pattern.
  static absl::StatusOr<std::unique_ptr<Regex>> compile_oniguruma(std::string_view pattern);
  // From a {"String": ...} pattern: the text itself, literally.
  static absl::StatusOr<std::unique_ptr<Regex>> compile_literal(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [begin, end) of the successive non-overlapping matches in text (valid UTF-8), scanning
  // left to right; after an empty match the scan resumes one character later. A matching error (e.g. a
  // pattern that backtracks past PCRE2's limits) ends the scan: the rest of the text is not matched.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  static absl::StatusOr<std::unique_ptr<Regex>> compile(const std::string& pcre_pattern, uint32_t options,
                                                        std::string_view original);
  void* code_;  // pcre2_code_8*
};

}  // namespace freekv::tok
