// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Llama 3, Qwen2/Qwen3, GPT-2 style).
//
// Encoding follows the Hugging Face `tokenizers` pipeline exactly: split out added tokens (special or
// not) by longest match, NFC-normalise when the file says so, pre-tokenize (regex Split + ByteLevel),
// map bytes to the byte-level alphabet, apply BPE merges by rank, then the post-processor's special
// tokens (e.g. Llama 3's <|begin_of_text|>) when add_special is set.
//
// Choices (details in bpe_tokenizer.h and the component headers):
//  - Text is UTF-8. Invalid input is not an error: each maximal invalid subpart is encoded as U+FFFD,
//    which is what Hugging Face sees after a lossy conversion to a Rust &str / JS string.
//  - Supported components: normalizer NFC/NFD/NFKC/NFKD/Sequence; pre_tokenizer Split (Isolated or
//    Removed), ByteLevel, Sequence; model BPE (string or pair merges, ignore_merges, unk/fuse_unk);
//    post_processor TemplateProcessing, ByteLevel, Sequence; decoder ByteLevel. Anything else is an
//    INVALID_ARGUMENT naming the component type, the JSON path and the file.
//  - Checked against @huggingface/tokenizers on the real Llama 3 and Qwen3 files (tests/tokenizer).
//  - A loaded Tokenizer never changes (its BPE word cache is internally locked): all methods may be
//    called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freekv {

class Tokenizer {
 public:
  // source names the file in errors.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> from_json(std::string_view json_text,
                                                              const std::string& source);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> load(const std::string& tokenizer_json_path);
  virtual ~Tokenizer() = default;

  // add_special: apply the post-processor's template (BOS etc.), as HF encode(add_special_tokens=True).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;

  // Raw bytes of one token (byte-level decoded; added tokens give their content). Empty for an id
  // outside the vocabulary.
  virtual std::string token_bytes(int32_t id) const = 0;

  // Whole-sequence decode; special tokens are skipped when skip_special is set.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;            // highest id + 1, added tokens included
  virtual bool is_special(int32_t id) const = 0;
  virtual int32_t token_to_id(std::string_view token) const = 0;  // -1 when unknown
};

// Turns a stream of token ids into text pieces that are always complete UTF-8: bytes of a character
// split across tokens are held back until the character is complete. Invalid sequences that can never
// complete are emitted as U+FFFD, as the Hugging Face decoder does.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = true);
  // The text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back, completed with U+FFFD where broken.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

// A deterministic byte-level BPE tokenizer.json trained on a small built-in English and code corpus:
// 256 byte tokens, then merges up to `vocab_size - 2` tokens, then the special tokens
// <|begin_of_text|>, <|end_of_text|> (ids vocab_size - 2 and vocab_size - 1). When the corpus runs out
// (about 2.15k tokens), made-up words extend it, so the vocabulary is always exactly vocab_size.
// vocab_size must lie in [264, 262144]. Used by `freekv mkmodel` for random models.
absl::StatusOr<std::string> make_bpe_tokenizer_json(int vocab_size);
// The same, trained on `corpus` (UTF-8 text) instead: `freekv mktokenizer`, for the trained model.
absl::StatusOr<std::string> make_bpe_tokenizer_json(int vocab_size, std::string_view corpus);

}  // namespace freekv
