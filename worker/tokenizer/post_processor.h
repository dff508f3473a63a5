// tokenizer.json "post_processor", reduced to what it does to the ids of one sequence: ids to put
// before and after it when special tokens are requested (encode with add_special).
// Supported: TemplateProcessing (its "single" template), ByteLevel (changes offsets only, never ids),
// Sequence of these, and null. Other types are an error naming the type.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

struct PostProcessor {
  std::vector<int32_t> prefix;  // e.g. Llama 3's <|begin_of_text|>
  std::vector<int32_t> suffix;

  // j is the value of "post_processor" (not null); ids must lie below vocab_size.
  static absl::StatusOr<PostProcessor> parse(const json& j, const JsonWhere& where, int32_t vocab_size);
};

}  // namespace freekv::tok
