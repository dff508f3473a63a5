#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

JsonWhere JsonWhere::field(std::string_view key) const {
  return JsonWhere(*source_, path_.empty() ? std::string(key) : absl::StrCat(path_, ".", std::string(key)));
}

JsonWhere JsonWhere::index(size_t i) const { return JsonWhere(*source_, absl::StrCat(path_, "[", i, "]")); }

absl::Status JsonWhere::error(std::string_view message) const {
  if (path_.empty()) return absl::InvalidArgumentError(absl::StrCat(*source_, ": ", std::string(message)));
  return absl::InvalidArgumentError(absl::StrCat(*source_, ": ", path_, ": ", std::string(message)));
}

const char* json_type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

const json* json_find(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<const json*> json_require(const json& obj, std::string_view key, const JsonWhere& where) {
  if (!obj.is_object()) return where.error(absl::StrCat("must be an object, got ", json_type_name(obj)));
  const json* v = json_find(obj, key);
  if (v == nullptr) return where.error(absl::StrCat("missing field \"", std::string(key), "\""));
  return v;
}

absl::StatusOr<std::string> json_string(const json& obj, std::string_view key, const JsonWhere& where) {
  FREEKV_ASSIGN_OR_RETURN(const json* v, json_require(obj, key, where));
  if (!v->is_string()) {
    return where.field(key).error(absl::StrCat("must be a string, got ", json_type_name(*v)));
  }
  return v->get_ref<const std::string&>();
}

absl::StatusOr<std::string> json_optional_string(const json& obj, std::string_view key, const JsonWhere& where) {
  const json* v = json_find(obj, key);
  if (v == nullptr) return std::string();
  if (!v->is_string()) {
    return where.field(key).error(absl::StrCat("must be a string, got ", json_type_name(*v)));
  }
  return v->get_ref<const std::string&>();
}

absl::StatusOr<bool> json_bool(const json& obj, std::string_view key, bool fallback, const JsonWhere& where) {
  const json* v = json_find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    return where.field(key).error(absl::StrCat("must be true or false, got ", json_type_name(*v)));
  }
  return v->get<bool>();
}

absl::StatusOr<std::string> json_component_type(const json& obj, const JsonWhere& where) {
  if (!obj.is_object()) return where.error(absl::StrCat("must be an object, got ", json_type_name(obj)));
  return json_string(obj, "type", where);
}

}  // namespace freekv::tok
