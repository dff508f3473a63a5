// Fuzz target for the tokenizer: tokenizer.json parsing on arbitrary bytes, and encode / decode /
// streaming on arbitrary text with a small fixed tokenizer.
//
// The first byte picks the mode (so the seed corpus can aim at each):
//   '{' or anything else  : the whole input is a tokenizer.json for Tokenizer::from_json; if it loads,
//                           a short fixed text is encoded and decoded with it too
//   'T' (0x54)            : the rest is text (any bytes, often invalid UTF-8: it is encoded with each
//                           maximal invalid subpart replaced by U+FFFD, as documented in bpe_tokenizer.h)
//                           for the static tokenizer from make_bpe_tokenizer_json(300)
//   'I' (0x49)            : the rest is a sequence of 16-bit little-endian ids (in range or not) for
//                           decode and the streaming detokenizer
// Invariants checked (abort on violation): decode output is valid UTF-8; decode(encode(text)) == text
// for valid UTF-8 text; streaming pieces are valid UTF-8 and add up to decode.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace {

const freekv::Tokenizer& small_tokenizer() {
  static const std::unique_ptr<freekv::Tokenizer> t = [] {
    auto json = freekv::make_bpe_tokenizer_json(300);
    if (!json.ok()) std::abort();
    auto loaded = freekv::Tokenizer::from_json(*json, "generated-300");
    if (!loaded.ok()) std::abort();
    return std::move(loaded).value();
  }();
  return *t;
}

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: invariant violated: %s\n", what);
    std::abort();
  }
}

void check_decode(const freekv::Tokenizer& t, const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    std::string whole = t.decode(ids, skip);
    require(freekv::tok::is_valid_utf8(whole), "decode gives valid UTF-8");
    freekv::StreamingDetokenizer stream(t, skip);
    std::string joined;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      require(freekv::tok::is_valid_utf8(piece), "streaming piece is valid UTF-8");
      joined += piece;
    }
    joined += stream.flush();
    require(joined == whole, "streaming pieces add up to decode");
  }
}

void check_text(const freekv::Tokenizer& t, std::string_view text) {
  std::vector<int32_t> ids = t.encode(text, false);
  std::vector<int32_t> with_special = t.encode(text, true);
  require(with_special.size() >= ids.size(), "special tokens only add ids");
  for (int32_t id : with_special) require(id >= 0 && id < t.vocab_size(), "ids are in the vocabulary");
  // Generated tokenizers have no normaliser, so valid text round-trips exactly.
  if (&t == &small_tokenizer() && freekv::tok::is_valid_utf8(text)) {
    require(t.decode(ids, false) == text, "decode(encode(text)) == text");
  }
  check_decode(t, with_special);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && input[0] == 'T') {
    check_text(small_tokenizer(), input.substr(1));
    return 0;
  }
  if (!input.empty() && input[0] == 'I') {
    std::vector<int32_t> ids;
    for (size_t i = 1; i + 1 < input.size(); i += 2) {
      ids.push_back(int32_t(uint8_t(input[i]) | (uint8_t(input[i + 1]) << 8)) - 8);  // a few negative ids too
    }
    check_decode(small_tokenizer(), ids);
    return 0;
  }
  auto loaded = freekv::Tokenizer::from_json(input, "fuzz-input");
  if (loaded.ok()) check_text(**loaded, "Hello, world! 123 \xC3\xA9\xF0\x9F\x98\x80 <|begin_of_text|>\n\tend");
  return 0;
}
