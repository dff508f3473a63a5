// make_bpe_tokenizer_json: a small, deterministic byte-level BPE trainer.
//
// The corpus (the built-in one, or the caller's) is pre-tokenized with Llama 3's split pattern; each distinct piece is a word
// with a count. Ids 0..255 are the bytes (id = byte value). Each round merges the adjacent pair with
// the highest total count (ties: the smaller (left id, right id)), until the vocabulary holds
// vocab_size - 2 tokens. Pair counts are kept incrementally (a merge revisits only the words holding
// the pair) and the best pair comes from a lazily updated heap, so large vocabularies stay fast.
// When the corpus is used up (every piece is one token) before the target size, training goes on over
// deterministic made-up words (" kelamo", " tirusa", ...) so that the vocabulary always has exactly
// vocab_size ids: random models get an embedding that matches their tokenizer. The two special tokens
// take the last two ids.
// Output: an HF-format tokenizer.json (ByteLevel pre-tokenizer/decoder, Split with the Llama 3
// pattern, TemplateProcessing adding <|begin_of_text|>), loadable by Hugging Face and by us.
#include <map>
#include <queue>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "worker/tokenizer/byte_level.h"
#include "worker/tokenizer/regex.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/tokenizer/trainer_corpus.h"
#include <nlohmann/json.hpp>

namespace freekv {

namespace {

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kBos = "<|begin_of_text|>";
constexpr std::string_view kEos = "<|end_of_text|>";
constexpr int kNumSpecial = 2;
// 256 bytes, the specials, and at least a few merges so the result is a BPE worth the name.
constexpr int kMinVocab = 256 + kNumSpecial + 6;
// Large enough for real model shapes (Llama 3: 128256), small enough to train in a few seconds.
constexpr int kMaxVocab = 1 << 18;

uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

class Trainer {
 public:
  Trainer() {
    for (int b = 0; b < 256; ++b) token_bytes_.push_back(std::string(1, char(b)));
    for (int b = 0; b < 256; ++b) id_of_.emplace(token_bytes_[b], b);
  }

  // Words added after some merges are first segmented with those merges (lowest rank first, as
  // BPE encoding does), so training never re-learns a known merge.
  void add_word(const std::string& bytes, int64_t count) {
    Word w{{}, count};
    for (unsigned char c : bytes) w.symbols.push_back(c);
    apply_known_merges(&w.symbols);
    words_.push_back(std::move(w));
    add_pairs(int32_t(words_.size()) - 1, +1);
  }

  // Merges until `target` tokens exist or no pair is left; returns whether the target was reached.
  bool run(int target) {
    while (int(token_bytes_.size()) < target) {
      if (!pop_best()) return false;
    }
    return true;
  }

  const std::vector<std::string>& token_bytes() const { return token_bytes_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }

 private:
  struct Entry {
    int64_t count;
    uint64_t pair;
    // Max-heap order: higher count first, then the smaller pair.
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
  };

  void apply_known_merges(std::vector<int32_t>* s) const {
    while (s->size() > 1) {
      size_t best_i = 0;
      const std::pair<int32_t, int32_t>* best = nullptr;
      for (size_t i = 0; i + 1 < s->size(); ++i) {
        auto it = known_.find(key((*s)[i], (*s)[i + 1]));
        if (it != known_.end() && (best == nullptr || it->second.first < best->first)) {
          best = &it->second;
          best_i = i;
        }
      }
      if (best == nullptr) return;
      (*s)[best_i] = best->second;
      s->erase(s->begin() + best_i + 1);
    }
  }

  bool pop_best() {
    while (!heap_.empty()) {
      Entry top = heap_.top();
      heap_.pop();
      auto it = pair_counts_.find(top.pair);
      if (it == pair_counts_.end() || it->second != top.count || top.count <= 0) continue;  // stale
      merge(int32_t(top.pair >> 32), int32_t(top.pair & 0xFFFFFFFFu));
      return true;
    }
    return false;
  }

  void add_pairs(int32_t w, int sign) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      uint64_t k = key(word.symbols[i], word.symbols[i + 1]);
      int64_t& count = pair_counts_[k];
      count += sign * word.count;
      touched_.insert(k);
      if (sign > 0) pair_words_[k].insert(w);
    }
  }

  // Pushes the new counts of the pairs changed since the last call.
  void publish() {
    for (uint64_t k : touched_) {
      auto it = pair_counts_.find(k);
      if (it == pair_counts_.end()) continue;
      if (it->second > 0) {
        heap_.push({it->second, k});
      } else {
        pair_counts_.erase(it);
        pair_words_.erase(k);
      }
    }
    touched_.clear();
  }

  void merge(int32_t a, int32_t b) {
    std::string bytes = token_bytes_[a] + token_bytes_[b];
    auto [it, inserted] = id_of_.try_emplace(bytes, int32_t(token_bytes_.size()));
    if (inserted) token_bytes_.push_back(bytes);
    const int32_t merged = it->second;
    // A pair can come back when another merge rebuilt one of its tokens from different parts; the
    // existing merge already covers it, and a duplicate would change that merge's rank.
    if (known_.try_emplace(key(a, b), int32_t(merges_.size()), merged).second) merges_.push_back({a, b});
    auto found = pair_words_.find(key(a, b));
    std::vector<int32_t> affected(found->second.begin(), found->second.end());
    std::sort(affected.begin(), affected.end());  // results must not depend on hash order
    for (int32_t w : affected) {
      add_pairs(w, -1);
      std::vector<int32_t>& s = words_[w].symbols;
      std::vector<int32_t> out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = std::move(out);
      add_pairs(w, +1);
    }
    publish();
  }

 public:
  void start() { publish(); }

 private:
  std::vector<Word> words_;
  std::vector<std::string> token_bytes_;                   // by id
  absl::flat_hash_map<std::string, int32_t> id_of_;        // bytes -> id
  std::vector<std::pair<int32_t, int32_t>> merges_;        // in rank order
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> known_;  // pair -> (rank, merged id)
  absl::flat_hash_map<uint64_t, int64_t> pair_counts_;     // pair -> weighted count (> 0)
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int32_t>> pair_words_;  // pair -> words (superset)
  std::set<uint64_t> touched_;                             // ordered: heap pushes in a fixed order
  std::priority_queue<Entry> heap_;
};

// Made-up words from a fixed syllable table and a fixed-seed LCG: " kelamo", " tirusa", ... Each is
// new to the vocabulary, so merging it adds tokens; none of them is ever expected in real text.
std::vector<std::string> made_up_words(size_t count, uint64_t* state, std::set<std::string>* seen) {
  static constexpr std::string_view kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
                                                  "v", "z", "br", "st", "tr", "pl", "sh", "ch"};
  static constexpr std::string_view kVowels[] = {"a", "e", "i", "o", "u", "ai", "ou", "ea"};
  auto next = [state](uint64_t n) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (*state >> 33) % n;
  };
  std::vector<std::string> out;
  while (out.size() < count) {
    std::string w = " ";
    for (uint64_t s = 0, n = 2 + next(3); s < n; ++s) {
      w += kOnsets[next(std::size(kOnsets))];
      w += kVowels[next(std::size(kVowels))];
    }
    if (seen->insert(w).second) out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

namespace {
absl::StatusOr<std::string> make_json(int vocab_size, std::string_view corpus);
}  // namespace

absl::StatusOr<std::string> make_bpe_tokenizer_json(int vocab_size) {
  return make_bpe_tokenizer_json(vocab_size, tok::trainer_corpus());
}

absl::StatusOr<std::string> make_bpe_tokenizer_json(int vocab_size, std::string_view corpus) {
  try {
    return make_json(vocab_size, corpus);
  } catch (const std::exception& e) {  // bad_alloc, or nlohmann on a bug: never past this edge
    return absl::InternalError(absl::StrCat("make_bpe_tokenizer_json(", vocab_size, "): ", e.what()));
  }
}

namespace {
absl::StatusOr<std::string> make_json(int vocab_size, std::string_view corpus) {
  if (vocab_size < kMinVocab || vocab_size > kMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size ", vocab_size, " is out of range [", kMinVocab, ", ",
                                                   kMaxVocab, "]: 256 byte tokens and ", kNumSpecial,
                                                   " special tokens need room for some merges"));
  }
  FREEKV_ASSIGN_OR_RETURN(auto regex, tok::Regex::compile_oniguruma(kLlama3Pattern));
  std::vector<std::pair<size_t, size_t>> matches;
  regex->find_all(corpus, &matches);
  std::map<std::string, int64_t> counts;  // ordered: word order must not depend on hashing
  for (auto [b, e] : matches) {
    if (e > b) ++counts[std::string(corpus.substr(b, e - b))];
  }
  Trainer trainer;
  std::set<std::string> seen;
  for (const auto& [text, count] : counts) {
    trainer.add_word(text, count);
    seen.insert(text);
  }
  trainer.start();
  const int target = vocab_size - kNumSpecial;
  uint64_t lcg = 0x5eed;
  while (!trainer.run(target)) {
    // The corpus is used up: feed made-up words, about one per two missing tokens.
    size_t missing = size_t(target - int(trainer.token_bytes().size()));
    for (const std::string& w : made_up_words(missing / 2 + 16, &lcg, &seen)) trainer.add_word(w, 1);
    trainer.start();
  }

  using ojson = nlohmann::ordered_json;
  const auto& tokens = trainer.token_bytes();
  const int32_t bos = int32_t(tokens.size()), eos = bos + 1;
  ojson vocab = ojson::object();
  // ordered_json's operator[] searches linearly; the keys are distinct, so append directly.
  auto& vocab_items = vocab.get_ref<ojson::object_t&>();
  vocab_items.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) vocab_items.emplace_back(tok::bytes_to_byte_level(tokens[id]), id);
  ojson merges = ojson::array();
  for (auto [a, b] : trainer.merges()) {
    merges.push_back({tok::bytes_to_byte_level(tokens[a]), tok::bytes_to_byte_level(tokens[b])});
  }
  auto added = [](int32_t id, std::string_view content) {
    return ojson{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                 {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  auto special = [](std::string_view name, int type_id) {
    return ojson{{"SpecialToken", {{"id", name}, {"type_id", type_id}}}};
  };
  auto sequence = [](std::string_view name, int type_id) {
    return ojson{{"Sequence", {{"id", name}, {"type_id", type_id}}}};
  };
  ojson root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = ojson::array({added(bos, kBos), added(eos, kEos)});
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       ojson::array({ojson{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"},
                           {"invert", false}},
                     ojson{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                           {"use_regex", false}}})}};
  root["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       ojson::array({ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                           {"use_regex", true}},
                     ojson{{"type", "TemplateProcessing"},
                           {"single", ojson::array({special(kBos, 0), sequence("A", 0)})},
                           {"pair", ojson::array({special(kBos, 0), sequence("A", 0), special(kBos, 1),
                                                  sequence("B", 1)})},
                           {"special_tokens",
                            {{std::string(kBos), {{"id", kBos}, {"ids", {bos}}, {"tokens", {kBos}}}}}}}})}};
  root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  root["model"] = {{"type", "BPE"},          {"dropout", nullptr},        {"unk_token", nullptr},
                   {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},      {"byte_fallback", false},    {"ignore_merges", false},
                   {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  return root.dump(1);
}
}  // namespace

}  // namespace freekv
