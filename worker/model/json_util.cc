#include "worker/model/json_util.h"

#include <exception>

namespace freekv::model_internal {

using nlohmann::json;

absl::StatusOr<json> parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON: ", e.what()));
  } catch (const std::exception& e) {  // bad_alloc on an absurd document
    return absl::ResourceExhaustedError(absl::StrCat(source, ": cannot parse JSON: ", e.what()));
  }
}

std::string describe_json(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
      return absl::StrCat("integer ", value.get<int64_t>());
    case json::value_t::number_unsigned:
      return absl::StrCat("integer ", value.get<uint64_t>());
    case json::value_t::number_float:
      return absl::StrCat("number ", value.get<double>());
    case json::value_t::string: {
      const std::string& s = value.get_ref<const std::string&>();
      constexpr size_t kMax = 40;
      // dump() escapes control characters; `replace` keeps invalid UTF-8 from throwing.
      std::string quoted = json(s.substr(0, kMax)).dump(-1, ' ', false, json::error_handler_t::replace);
      return absl::StrCat("string ", quoted, s.size() > kMax ? "..." : "");
    }
    case json::value_t::array:
      return absl::StrCat("an array of ", value.size(), " elements");
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  return "an unexpected value";
}

const json* find_non_null(const json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace freekv::model_internal
