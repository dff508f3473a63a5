// tokenizer.json "normalizer": Unicode normalisation forms (NFC, NFD, NFKC, NFKD) and Sequence of them,
// done with utf8proc. Qwen2/Qwen3 use NFC; Llama 3 has none. Any other normalizer type is an error
// naming it: silently skipping a normalizer would change token ids.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

class Normalizer {
 public:
  enum class Form { kNFC, kNFD, kNFKC, kNFKD };

  // j is the value of "normalizer" (not null).
  static absl::StatusOr<Normalizer> parse(const json& j, const JsonWhere& where);
  explicit Normalizer(std::vector<Form> forms) : forms_(std::move(forms)) {}

  bool empty() const { return forms_.empty(); }
  // text must be valid UTF-8.
  std::string normalize(std::string_view text) const;

 private:
  std::vector<Form> forms_;  // applied in order
};

}  // namespace freekv::tok
