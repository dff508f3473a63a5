// Typed access to tokenizer.json fields with errors a person can act on: every message names the file
// and the JSON path of the component ("pre_tokenizer.pretokenizers[1]"), then what is wrong.
// Never throws: callers check types through these helpers instead of nlohmann's throwing get<>().
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace freekv::tok {

using json = nlohmann::json;

// Debian's Abseil has its own string_view type, which std::string_view does not convert to; heterogeneous
// hash-map lookups (find(view) on a map keyed by std::string) need it.
inline absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Where a component sits: the source file and the JSON path inside it.
class JsonWhere {
 public:
  JsonWhere(const std::string& source, std::string path) : source_(&source), path_(std::move(path)) {}
  JsonWhere field(std::string_view key) const;
  JsonWhere index(size_t i) const;
  const std::string& path() const { return path_; }
  const std::string& source() const { return *source_; }
  // INVALID_ARGUMENT "<source>: <path>: <message>".
  absl::Status error(std::string_view message) const;

 private:
  const std::string* source_;
  std::string path_;
};

// "string", "object", "number", ...: for messages.
const char* json_type_name(const json& j);

// The member `key` of object obj, or nullptr when absent or null.
const json* json_find(const json& obj, std::string_view key);

absl::StatusOr<const json*> json_require(const json& obj, std::string_view key, const JsonWhere& where);
absl::StatusOr<std::string> json_string(const json& obj, std::string_view key, const JsonWhere& where);
// Absent or null gives `fallback`.
absl::StatusOr<bool> json_bool(const json& obj, std::string_view key, bool fallback, const JsonWhere& where);
absl::StatusOr<std::string> json_optional_string(const json& obj, std::string_view key, const JsonWhere& where);
// The "type" member of a component object (the object itself must be an object).
absl::StatusOr<std::string> json_component_type(const json& obj, const JsonWhere& where);

}  // namespace freekv::tok
