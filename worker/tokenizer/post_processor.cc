#include "worker/tokenizer/post_processor.h"

namespace freekv::tok {

namespace {
constexpr int kMaxDepth = 16;

// Applies TemplateProcessing's "single" template: [items before $A] $A [items after $A].
absl::Status parse_template(const json& j, const JsonWhere& where, int32_t vocab_size, PostProcessor* pp) {
  FREEKV_ASSIGN_OR_RETURN(const json* single, json_require(j, "single", where));
  JsonWhere swhere = where.field("single");
  if (!single->is_array()) {
    return swhere.error(absl::StrCat("must be an array of {\"SpecialToken\"}/{\"Sequence\"} items, got ",
                                     json_type_name(*single)));
  }
  const json* specials = json_find(j, "special_tokens");
  if (specials != nullptr && !specials->is_object()) return where.field("special_tokens").error("must be an object");
  std::vector<int32_t> before, after;
  int sequences = 0;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    JsonWhere iwhere = swhere.index(i);
    if (const json* seq = json_find(item, "Sequence")) {
      FREEKV_ASSIGN_OR_RETURN(std::string id, json_string(*seq, "id", iwhere.field("Sequence")));
      if (id != "A") return iwhere.error(absl::StrCat("the single-sequence template refers to sequence \"", id, "\""));
      ++sequences;
      continue;
    }
    const json* special = json_find(item, "SpecialToken");
    if (special == nullptr) return iwhere.error("must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    FREEKV_ASSIGN_OR_RETURN(std::string name, json_string(*special, "id", iwhere.field("SpecialToken")));
    const json* entry = specials ? json_find(*specials, name) : nullptr;
    if (entry == nullptr) {
      return where.field("special_tokens").error(absl::StrCat("has no entry for \"", name, "\" used by the template"));
    }
    JsonWhere ewhere = where.field("special_tokens").field(name);
    FREEKV_ASSIGN_OR_RETURN(const json* ids, json_require(*entry, "ids", ewhere));
    if (!ids->is_array()) return ewhere.field("ids").error("must be an array of ids");
    for (const json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        return ewhere.field("ids").error(absl::StrCat("must hold ids in [0, ", vocab_size, ")"));
      }
      (sequences == 0 ? before : after).push_back(int32_t(id.get<int64_t>()));
    }
  }
  if (sequences != 1) return swhere.error("must contain the sequence $A exactly once");
  // An outer processor wraps what the inner ones produced.
  pp->prefix.insert(pp->prefix.begin(), before.begin(), before.end());
  pp->suffix.insert(pp->suffix.end(), after.begin(), after.end());
  return absl::OkStatus();
}

absl::Status parse_at(const json& j, const JsonWhere& where, int32_t vocab_size, int depth, PostProcessor* pp) {
  if (depth > kMaxDepth) return where.error("post_processor Sequence nested too deeply");
  FREEKV_ASSIGN_OR_RETURN(std::string type, json_component_type(j, where));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "TemplateProcessing") return parse_template(j, where, vocab_size, pp);
  if (type == "Sequence") {
    FREEKV_ASSIGN_OR_RETURN(const json* list, json_require(j, "processors", where));
    if (!list->is_array()) return where.field("processors").error("must be an array");
    for (size_t i = 0; i < list->size(); ++i) {
      FREEKV_RETURN_IF_ERROR(parse_at((*list)[i], where.field("processors").index(i), vocab_size, depth + 1, pp));
    }
    return absl::OkStatus();
  }
  return where.error(absl::StrCat("post-processor type \"", type,
                                  "\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence)"));
}
}  // namespace

absl::StatusOr<PostProcessor> PostProcessor::parse(const json& j, const JsonWhere& where, int32_t vocab_size) {
  PostProcessor pp;
  FREEKV_RETURN_IF_ERROR(parse_at(j, where, vocab_size, 0, &pp));
  return pp;
}

}  // namespace freekv::tok
