#include "worker/tokenizer/bpe_tokenizer.h"

#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = sanitize_utf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  if (add_special) ids = post_processor_.prefix;
  std::vector<TextSegment> segments, inner;
  raw_added_.split(text, &segments);
  for (const TextSegment& seg : segments) {
    if (seg.token_id >= 0) {
      ids.push_back(seg.token_id);
      continue;
    }
    std::string_view part = text.substr(seg.begin, seg.end - seg.begin);
    std::string normalized = normalizer_ ? normalizer_->normalize(part) : std::string(part);
    if (normalized_added_.empty()) {
      encode_plain(normalized, &ids);
      continue;
    }
    inner.clear();
    normalized_added_.split(normalized, &inner);
    for (const TextSegment& sub : inner) {
      if (sub.token_id >= 0) {
        ids.push_back(sub.token_id);
      } else {
        encode_plain(std::string_view(normalized).substr(sub.begin, sub.end - sub.begin), &ids);
      }
    }
  }
  if (add_special) ids.insert(ids.end(), post_processor_.suffix.begin(), post_processor_.suffix.end());
  return ids;
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  std::vector<std::string> pieces{std::string(text)};
  if (pre_tokenizer_) pre_tokenizer_->apply(&pieces);
  for (const std::string& piece : pieces) model_->encode(piece, ids);
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::string();
  return id_bytes_[id];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && special_[id]) continue;
    bytes += id_bytes_[id];
  }
  return sanitize_utf8(bytes);
}

bool BpeTokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && special_[id]; }

int32_t BpeTokenizer::token_to_id(std::string_view token) const {
  auto it = added_ids_.find(av(token));
  if (it != added_ids_.end()) return it->second;
  return model_->token_to_id(token);
}

}  // namespace freekv::tok
