// StreamingDetokenizer: bytes of each token are appended to a small pending buffer, and everything
// that is decided (complete characters, or bytes that can never become valid) is released. A
// truncated character stays pending (at most 3 bytes) until the next token completes it or flush().
// The concatenated output always equals decode() of the whole id sequence.
#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace freekv {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamingDetokenizer::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return std::string();
  pending_ += tokenizer_.token_bytes(id);
  std::string out;
  size_t used = tok::append_decided_utf8(pending_, &out);
  pending_.erase(0, used);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out = tok::sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace freekv
