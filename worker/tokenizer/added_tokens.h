// tokenizer.json "added_tokens": strings such as <|begin_of_text|> or <think> that are cut out of the
// input before normalisation and BPE and become one id each, special or not.
//
// Matching is leftmost-longest over a byte trie, like Hugging Face. Tokens with "normalized": false
// (all of Llama 3's and Qwen3's) are matched in the raw text; with "normalized": true and a normalizer
// present, their normalised content is matched in the normalised text. Flags, with Hugging Face's
// meaning: lstrip / rstrip swallow the whitespace (Unicode White_Space) to the left / right of the
// match; single_word only matches when no letter, digit or '_' touches the match on either side.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// j is the value of "added_tokens" (an array).
absl::StatusOr<std::vector<AddedToken>> parse_added_tokens(const json& j, const JsonWhere& where);

// A piece of text after splitting: plain text [begin, end), or one added token.
struct TextSegment {
  size_t begin, end;
  int32_t token_id;  // -1 for plain text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() { root_.fill(-1); }
  // `text` is what to look for (the content, or the normalised content); empty texts are ignored.
  void add(std::string_view text, const AddedToken& token);
  bool empty() const { return tokens_.empty(); }

  // Appends the segments of text (valid UTF-8), covering it in order; plain segments are never empty.
  void split(std::string_view text, std::vector<TextSegment>* out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;  // index into tokens_ when a token ends here
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::array<int32_t, 256> root_;  // first byte -> node, the hot path of every encode
  std::vector<Node> nodes_;
  std::vector<AddedToken> tokens_;
};

}  // namespace freekv::tok
