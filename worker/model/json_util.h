// Internal to worker/model: nlohmann::json at the module edge. Every parser of untrusted JSON in this
// module goes through parse_json, so no nlohmann exception can escape into the engine, and through
// describe_json, so an error message quotes what was found without dumping a huge or deeply nested
// value (dumping recurses; a hostile file could nest a million levels).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace freekv::model_internal {

// Parses `text`; on a syntax error returns INVALID_ARGUMENT "<source>: invalid JSON: <nlohmann's
// message, which carries the line and column>".
absl::StatusOr<nlohmann::json> parse_json(std::string_view text, const std::string& source);

// A short human description of a value for "expected X, got Y": `string "32"`, `integer -3`,
// `number 1.5`, `true`, `null`, `an array of 3 elements`, `an object`. Strings are cut at 40 bytes.
std::string describe_json(const nlohmann::json& value);

// The value at `key` of object `obj`, or nullptr when the key is absent or its value is null (Hugging
// Face writes null for "use the default").
const nlohmann::json* find_non_null(const nlohmann::json& obj, const std::string& key);

}  // namespace freekv::model_internal
