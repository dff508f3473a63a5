#include "worker/tokenizer/bpe_model.h"

#include <queue>

#include "worker/tokenizer/utf8.h"

namespace freekv::tok {

namespace {
// Ids must be dense-ish: a vocabulary's id table is allocated up to its largest id.
constexpr int64_t kMaxTokenId = (int64_t(1) << 24) - 1;

absl::StatusOr<std::pair<std::string, std::string>> merge_parts(const json& m, const JsonWhere& where) {
  if (m.is_string()) {
    const std::string& s = m.get_ref<const std::string&>();
    size_t sp = s.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos) {
      return where.error(absl::StrCat("merge \"", s, "\" is not two tokens separated by one space"));
    }
    return std::make_pair(s.substr(0, sp), s.substr(sp + 1));
  }
  if (m.is_array()) {
    if (m.size() != 2 || !m[0].is_string() || !m[1].is_string()) {
      return where.error("merge must be a pair of strings [\"a\", \"b\"]");
    }
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return where.error(absl::StrCat("merge must be a string \"a b\" or a pair [\"a\", \"b\"], got ",
                                  json_type_name(m)));
}
}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::parse(const json& j, const JsonWhere& where) {
  if (!j.is_object()) return where.error(absl::StrCat("must be an object, got ", json_type_name(j)));
  FREEKV_ASSIGN_OR_RETURN(std::string type, json_optional_string(j, "type", where));
  if (type.empty() && json_find(j, "merges") == nullptr) {
    return where.error("has no \"type\" (expected \"BPE\")");
  }
  if (!type.empty() && type != "BPE") {
    return where.error(absl::StrCat("model type \"", type, "\" is not supported (supported: BPE)"));
  }
  if (const json* d = json_find(j, "dropout")) {
    if (!d->is_number()) return where.field("dropout").error("must be a number or null");
    if (d->get<double>() != 0.0) return where.field("dropout").error("BPE dropout is not supported (ids would be random)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    FREEKV_ASSIGN_OR_RETURN(std::string v, json_optional_string(j, key, where));
    if (!v.empty()) return where.field(key).error("a non-empty value is not supported (byte-level BPE only)");
  }
  FREEKV_ASSIGN_OR_RETURN(bool byte_fallback, json_bool(j, "byte_fallback", false, where));
  if (byte_fallback) return where.field("byte_fallback").error("byte_fallback is not supported (byte-level BPE only)");

  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  FREEKV_ASSIGN_OR_RETURN(model->fuse_unk_, json_bool(j, "fuse_unk", false, where));
  FREEKV_ASSIGN_OR_RETURN(model->ignore_merges_, json_bool(j, "ignore_merges", false, where));

  // Vocabulary: {"token": id, ...}
  FREEKV_ASSIGN_OR_RETURN(const json* vocab, json_require(j, "vocab", where));
  JsonWhere vwhere = where.field("vocab");
  if (!vocab->is_object()) return vwhere.error(absl::StrCat("must be an object {token: id}, got ", json_type_name(*vocab)));
  int64_t max_id = -1;
  model->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const json& v = it.value();
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId) {
      return vwhere.error(absl::StrCat("token \"", it.key(), "\" must map to an integer id in [0, ", kMaxTokenId, "]"));
    }
    max_id = std::max(max_id, v.get<int64_t>());
    model->vocab_.emplace(it.key(), int32_t(v.get<int64_t>()));
  }
  if (max_id >= int64_t(vocab->size()) * 4 + 65536) {
    return vwhere.error(absl::StrCat("ids are too sparse: largest id ", max_id, " for ", vocab->size(), " tokens"));
  }
  model->tokens_.assign(size_t(max_id + 1), std::string());
  std::vector<bool> seen(size_t(max_id + 1), false);
  for (const auto& [token, id] : model->vocab_) {
    if (seen[id]) {
      return vwhere.error(absl::StrCat("id ", id, " is used by two tokens (\"", model->tokens_[id], "\" and \"", token, "\")"));
    }
    seen[id] = true;
    model->tokens_[id] = token;
  }
  model->small_char_ids_.fill(-1);
  for (const auto& [token, id] : model->vocab_) {
    size_t pos = 0;
    if (token.empty()) continue;
    char32_t cp = next_code_point(token, &pos);
    if (pos == token.size() && cp < kSmallChars) model->small_char_ids_[cp] = id;
  }

  // Merges, in rank order. A later duplicate of a pair overrides the earlier one, as in Hugging Face.
  FREEKV_ASSIGN_OR_RETURN(const json* merges, json_require(j, "merges", where));
  JsonWhere mwhere = where.field("merges");
  if (!merges->is_array()) return mwhere.error(absl::StrCat("must be an array, got ", json_type_name(*merges)));
  model->merges_.reserve(merges->size());
  for (size_t r = 0; r < merges->size(); ++r) {
    FREEKV_ASSIGN_OR_RETURN(auto parts, merge_parts((*merges)[r], mwhere.index(r)));
    auto a = model->vocab_.find(parts.first), b = model->vocab_.find(parts.second);
    auto ab = model->vocab_.find(parts.first + parts.second);
    for (auto [found, text] : {std::pair{a, parts.first}, std::pair{b, parts.second},
                               std::pair{ab, parts.first + parts.second}}) {
      if (found == model->vocab_.end()) {
        return mwhere.index(r).error(absl::StrCat("merge \"", parts.first, " ", parts.second, "\" refers to \"", text,
                                                  "\", which is not in the vocabulary"));
      }
    }
    model->merges_[pair_key(a->second, b->second)] = Merge{int32_t(r), ab->second};
  }

  FREEKV_ASSIGN_OR_RETURN(std::string unk, json_optional_string(j, "unk_token", where));
  if (!unk.empty()) model->unk_id_ = model->token_to_id(unk);
  return model;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(av(token));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    if (int32_t id = token_to_id(piece); id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  const bool cacheable = piece.size() < kMaxCachedBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(av(piece));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word;
  merge_word(piece, &word);
  ids->insert(ids->end(), word.begin(), word.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.try_emplace(std::string(piece), std::move(word));
  }
}

void BpeModel::merge_word(std::string_view piece, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the live list, -1 at the ends
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  bool last_was_unk = false;
  for (size_t pos = 0; pos < piece.size();) {
    size_t start = pos;
    char32_t cp = next_code_point(piece, &pos);
    int32_t id = cp < kSmallChars ? small_char_ids_[cp] : token_to_id(piece.substr(start, pos - start));
    if (id < 0) {
      // Unknown character: the unk token (fused with a preceding one if fuse_unk), else dropped.
      if (unk_id_ < 0) continue;
      if (fuse_unk_ && last_was_unk) continue;
      id = unk_id_;
      last_was_unk = true;
    } else {
      last_was_unk = false;
    }
    int32_t i = int32_t(sym.size());
    sym.push_back({id, i - 1, -1, true});
    if (i > 0) sym[i - 1].next = i;
  }

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    int32_t right = sym[left].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(sym[left].id, sym[right].id));
    if (it != merges_.end()) heap.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i);

  while (!heap.empty()) {
    Candidate top = heap.top();
    heap.pop();
    Symbol& s = sym[top.pos];
    if (!s.alive || s.next < 0) continue;
    // Stale when either side changed since this candidate was pushed: the pair's rank tells.
    auto it = merges_.find(pair_key(s.id, sym[s.next].id));
    if (it == merges_.end() || it->second.rank != top.rank) continue;
    Symbol& r = sym[s.next];
    r.alive = false;
    s.id = top.new_id;
    s.next = r.next;
    if (s.next >= 0) sym[s.next].prev = top.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(top.pos);
  }
  for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) ids->push_back(sym[i].id);
}

}  // namespace freekv::tok
