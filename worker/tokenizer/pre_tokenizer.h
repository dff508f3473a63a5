// tokenizer.json "pre_tokenizer": cuts normalised text into pieces that BPE encodes independently.
// Supported: Split (regex or literal pattern, behaviour Isolated or Removed, invert false), ByteLevel
// (optional prefix space, optional GPT-2 split regex, then every byte shown as its byte-level
// character) and Sequence of these. Anything else is an error naming the type: a pre-tokenizer we
// skipped would silently change the ids.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

class PreTokenizer {
 public:
  // j is the value of "pre_tokenizer" (not null).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> parse(const json& j, const JsonWhere& where);
  virtual ~PreTokenizer() = default;

  // Replaces *pieces by their sub-pieces, in order; never produces empty pieces.
  virtual void apply(std::vector<std::string>* pieces) const = 0;
};

}  // namespace freekv::tok
