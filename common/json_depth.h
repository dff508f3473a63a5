// How deeply a parsed JSON document nests, checked without recursion. Parsing and freeing a document
// do not recurse, but copying, printing or converting one does: a client's document nested a hundred
// thousand levels deep would overflow a serving thread's stack there. Check what a client sent before
// doing any of those.
#pragma once

#include <cstddef>
#include <vector>

#include "nlohmann/json.hpp"

namespace freekv {

inline bool json_nests_deeper_than(const nlohmann::json& document, size_t max_depth) {
  std::vector<std::pair<const nlohmann::json*, size_t>> pending = {{&document, 0}};  // (value, its depth)
  while (!pending.empty()) {
    const auto [value, depth] = pending.back();
    pending.pop_back();
    if (!value->is_structured()) continue;
    if (depth + 1 > max_depth) return true;
    for (const auto& child : *value) pending.push_back({&child, depth + 1});
  }
  return false;
}

}  // namespace freekv
