#include "worker/tokenizer/normalizer.h"

#include <cstdlib>

#include <utf8proc.h>

namespace freekv::tok {

namespace {
constexpr int kMaxDepth = 16;  // nested Sequences; bounds recursion on hostile input

absl::Status parse_into(const json& j, const JsonWhere& where, int depth, std::vector<Normalizer::Form>* out) {
  if (depth > kMaxDepth) return where.error("normalizer Sequence nested too deeply");
  FREEKV_ASSIGN_OR_RETURN(std::string type, json_component_type(j, where));
  if (type == "NFC") out->push_back(Normalizer::Form::kNFC);
  else if (type == "NFD") out->push_back(Normalizer::Form::kNFD);
  else if (type == "NFKC") out->push_back(Normalizer::Form::kNFKC);
  else if (type == "NFKD") out->push_back(Normalizer::Form::kNFKD);
  else if (type == "Sequence") {
    FREEKV_ASSIGN_OR_RETURN(const json* list, json_require(j, "normalizers", where));
    if (!list->is_array()) return where.field("normalizers").error("must be an array");
    for (size_t i = 0; i < list->size(); ++i) {
      FREEKV_RETURN_IF_ERROR(parse_into((*list)[i], where.field("normalizers").index(i), depth + 1, out));
    }
  } else {
    return where.error(absl::StrCat("normalizer type \"", type,
                                    "\" is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)"));
  }
  return absl::OkStatus();
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) if (c >= 0x80) return false;
  return true;
}
}  // namespace

absl::StatusOr<Normalizer> Normalizer::parse(const json& j, const JsonWhere& where) {
  std::vector<Form> forms;
  FREEKV_RETURN_IF_ERROR(parse_into(j, where, 0, &forms));
  return Normalizer(std::move(forms));
}

std::string Normalizer::normalize(std::string_view text) const {
  // Every form leaves pure ASCII unchanged; most prompts take this path.
  if (forms_.empty() || is_ascii(text)) return std::string(text);
  std::string cur(text);
  for (Form f : forms_) {
    int options = UTF8PROC_STABLE;
    switch (f) {
      case Form::kNFC: options |= UTF8PROC_COMPOSE; break;
      case Form::kNFD: options |= UTF8PROC_DECOMPOSE; break;
      case Form::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
      case Form::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t* dst = nullptr;
    // An explicit length (no UTF8PROC_NULLTERM) keeps embedded NUL characters.
    utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(cur.data()),
                                      utf8proc_ssize_t(cur.size()), &dst, utf8proc_option_t(options));
    // n < 0 cannot happen for valid UTF-8 (callers sanitise first); keep the text unchanged if it does.
    if (n >= 0) cur.assign(reinterpret_cast<const char*>(dst), size_t(n));
    std::free(dst);
  }
  return cur;
}

}  // namespace freekv::tok
