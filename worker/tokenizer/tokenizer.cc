// Loading tokenizer.json: parses the file, builds every component, and turns every problem (bad JSON,
// wrong types, unsupported components) into an INVALID_ARGUMENT that names the file and the field.
// nlohmann exceptions stop here; nothing escapes from_json.
#include <filesystem>
#include <system_error>

#include "common/file_util.h"
#include "worker/tokenizer/byte_level.h"
#include "worker/tokenizer/bpe_tokenizer.h"

namespace freekv {

namespace tok {
namespace {
constexpr int kMaxDepth = 16;

// The decoder must undo the byte-level mapping; that is the only decoding we implement.
absl::Status check_decoder(const json* j, const JsonWhere& where, int depth) {
  if (j == nullptr) return where.error("is missing or null; a byte-level BPE tokenizer needs a ByteLevel decoder");
  if (depth > kMaxDepth) return where.error("decoder Sequence nested too deeply");
  FREEKV_ASSIGN_OR_RETURN(std::string type, json_component_type(*j, where));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    FREEKV_ASSIGN_OR_RETURN(const json* list, json_require(*j, "decoders", where));
    if (!list->is_array() || list->empty()) return where.field("decoders").error("must be a non-empty array");
    for (size_t i = 0; i < list->size(); ++i) {
      FREEKV_RETURN_IF_ERROR(check_decoder(&(*list)[i], where.field("decoders").index(i), depth + 1));
    }
    return absl::OkStatus();
  }
  return where.error(absl::StrCat("decoder type \"", type, "\" is not supported (supported: ByteLevel, Sequence)"));
}
}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::parse(const json& root, const std::string& source) {
  JsonWhere top(source, "");
  if (!root.is_object()) return top.error(absl::StrCat("top level must be an object, got ", json_type_name(root)));
  auto t = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());

  FREEKV_ASSIGN_OR_RETURN(const json* model, json_require(root, "model", top));
  FREEKV_ASSIGN_OR_RETURN(t->model_, BpeModel::parse(*model, top.field("model")));

  if (const json* n = json_find(root, "normalizer")) {
    FREEKV_ASSIGN_OR_RETURN(Normalizer normalizer, Normalizer::parse(*n, top.field("normalizer")));
    if (!normalizer.empty()) t->normalizer_ = std::move(normalizer);
  }
  if (const json* p = json_find(root, "pre_tokenizer")) {
    FREEKV_ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizer::parse(*p, top.field("pre_tokenizer")));
  }
  FREEKV_RETURN_IF_ERROR(check_decoder(json_find(root, "decoder"), top.field("decoder"), 0));

  std::vector<AddedToken> added;
  if (const json* a = json_find(root, "added_tokens")) {
    FREEKV_ASSIGN_OR_RETURN(added, parse_added_tokens(*a, top.field("added_tokens")));
  }

  // Id table: model tokens decoded from the byte-level alphabet, then added tokens (which win on a
  // shared id, as in Hugging Face).
  const std::vector<std::string>& tokens = t->model_->tokens();
  size_t n = tokens.size();
  for (const AddedToken& a : added) n = std::max(n, size_t(a.id) + 1);
  if (n > tokens.size() + (size_t(1) << 20)) {
    return top.field("added_tokens").error(absl::StrCat("added token ids reach ", n - 1, ", far beyond the ",
                                                        tokens.size(), " model tokens"));
  }
  t->id_bytes_.assign(n, std::string());
  t->special_.assign(n, false);
  for (size_t id = 0; id < tokens.size(); ++id) {
    // A token with characters outside the alphabet decodes to its own UTF-8 bytes, as in Hugging Face.
    if (!byte_level_to_bytes(tokens[id], &t->id_bytes_[id])) t->id_bytes_[id] = tokens[id];
  }
  for (const AddedToken& a : added) {
    t->id_bytes_[a.id] = a.content;
    t->special_[a.id] = a.special;
    t->added_ids_.try_emplace(a.content, a.id);
    if (a.normalized && t->normalizer_) {
      t->normalized_added_.add(t->normalizer_->normalize(a.content), a);
    } else {
      t->raw_added_.add(a.content, a);
    }
  }

  if (const json* pp = json_find(root, "post_processor")) {
    FREEKV_ASSIGN_OR_RETURN(t->post_processor_, PostProcessor::parse(*pp, top.field("post_processor"), int32_t(n)));
  }
  return t;
}

}  // namespace tok

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  try {
    tok::json root = tok::json::parse(json_text.begin(), json_text.end());
    FREEKV_ASSIGN_OR_RETURN(auto t, tok::BpeTokenizer::parse(root, source));
    return std::unique_ptr<Tokenizer>(std::move(t));
  } catch (const tok::json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(source, ": out of memory while loading the tokenizer"));
  } catch (const std::exception& e) {
    // Should not happen (fields are checked before use); kept so that nothing escapes.
    return absl::InvalidArgumentError(absl::StrCat(source, ": malformed tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& tokenizer_json_path) {
  std::string path = tokenizer_json_path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path = (std::filesystem::path(path) / "tokenizer.json").string();
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return from_json(text, path);
}

}  // namespace freekv
