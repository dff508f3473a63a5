// The Tokenizer implementation: a Hugging Face pipeline specialised to byte-level BPE.
//   encode: repair invalid UTF-8 (each maximal invalid subpart becomes U+FFFD, as a Rust &str or a JS
//           string would hold it) -> cut out added tokens -> normalise -> cut out normalised added
//           tokens -> pre-tokenize -> BPE -> post-processor ids (add_special only).
//   decode: bytes of every id (skipping special ones on request) -> UTF-8 with U+FFFD for broken parts.
// "truncation" and "padding" in tokenizer.json are ignored: the server bounds lengths itself, and
// cutting a prompt silently would be worse than rejecting it upstream.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "worker/tokenizer/added_tokens.h"
#include "worker/tokenizer/bpe_model.h"
#include "worker/tokenizer/normalizer.h"
#include "worker/tokenizer/post_processor.h"
#include "worker/tokenizer/pre_tokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv::tok {

class BpeTokenizer final : public Tokenizer {
 public:
  // root is the whole parsed tokenizer.json; source names the file in errors.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> parse(const json& root, const std::string& source);

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  int32_t vocab_size() const override { return int32_t(id_bytes_.size()); }
  bool is_special(int32_t id) const override;
  int32_t token_to_id(std::string_view token) const override;

 private:
  BpeTokenizer() = default;
  // Normalised text without added tokens -> ids.
  void encode_plain(std::string_view text, std::vector<int32_t>* ids) const;

  std::optional<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // null: the whole text is one pre-token
  std::unique_ptr<BpeModel> model_;
  PostProcessor post_processor_;
  AddedTokenMatcher raw_added_;         // matched before normalisation
  AddedTokenMatcher normalized_added_;  // matched after it
  absl::flat_hash_map<std::string, int32_t> added_ids_;  // content -> id
  std::vector<std::string> id_bytes_;   // decoded bytes per id; empty for unused ids
  std::vector<bool> special_;           // per id
};

}  // namespace freekv::tok
