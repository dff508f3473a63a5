// tokenizer.json "model" of type BPE: the vocabulary, the ranked merges, and the merge loop that turns
// one pre-token into ids.
//
// Merge loop (as Hugging Face): start from one symbol per character of the pre-token; repeatedly apply
// the merge of lowest rank among adjacent pairs, leftmost first on ties, until none applies. A binary
// heap of candidate merges with lazy invalidation makes it O(n log n) per pre-token, and results for
// short pre-tokens are cached (words repeat a lot in real text).
// ignore_merges (Llama 3): a pre-token that is itself in the vocabulary is emitted as that one token
// without running any merges. That can differ from what the merges would build.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "worker/tokenizer/json_util.h"

namespace freekv::tok {

class BpeModel {
 public:
  // j is the value of "model".
  static absl::StatusOr<std::unique_ptr<BpeModel>> parse(const json& j, const JsonWhere& where);

  // Appends the ids of one pre-token (text in the vocabulary's alphabet, e.g. byte-level characters).
  void encode(std::string_view piece, std::vector<int32_t>* ids) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  // Token text by id; empty for an id that the vocabulary skips.
  const std::vector<std::string>& tokens() const { return tokens_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  void merge_word(std::string_view piece, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  // Ids of one-character tokens for code points below kSmallChars: all of the byte-level alphabet.
  static constexpr size_t kSmallChars = 0x400;
  std::array<int32_t, kSmallChars> small_char_ids_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Pre-token -> ids, for pre-tokens shorter than kMaxCachedBytes; cleared when it reaches
  // kMaxCacheEntries so memory stays bounded.
  static constexpr size_t kMaxCachedBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace freekv::tok
