#include "worker/chat/chat_template.h"

#include <filesystem>

#include "common/file_util.h"
#include "common/json_depth.h"

namespace freekv {

absl::StatusOr<ChatTemplate> ChatTemplate::load(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "tokenizer_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    ChatTemplate none;
    none.source_ = path;
    return none;
  }
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object; fix or remove the file"));
  }
  return from_config(config, path);
}

absl::StatusOr<ChatTemplate> ChatTemplate::from_config(const nlohmann::json& config, const std::string& source) {
  ChatTemplate t;
  t.source_ = source;
  // Special tokens are strings, or AddedToken objects {"content": "...", ...}.
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    auto it = config.find(key);
    if (it == config.end()) continue;
    if (it->is_string()) t.special_tokens_[key] = *it;
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) t.special_tokens_[key] = (*it)["content"];
  }
  if (t.special_tokens_.contains("eos_token")) t.eos_token_ = t.special_tokens_["eos_token"].get<std::string>();

  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return t;
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_array()) {
    for (const auto& named : *it) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") && named["template"].is_string()) {
        text = named["template"].get<std::string>();
      }
    }
    if (text.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": chat_template is a list without a template named \"default\""));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(source, ": chat_template must be a string or a list of {name, template}"));
  }
  absl::StatusOr<jinja::Template> program = jinja::Template::parse(text);
  if (!program.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": chat_template: ", program.status().message()));
  }
  t.program_ = std::move(*program);
  return t;
}

// Template variables are a client's JSON: checked before they are copied or converted (both recurse).
constexpr size_t kMaxVariablesDepth = 64;

absl::StatusOr<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                                 const nlohmann::json& extra_variables) const {
  if (!program_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model has no chat template (no chat_template in ", source_,
        "), so it cannot answer a chat; send the prompt as plain text instead (drop --chat, or use /v1/completions)"));
  }
  if (messages.empty()) return absl::InvalidArgumentError("the conversation has no messages; give at least one");
  if (!extra_variables.is_null() && !extra_variables.is_object()) {
    return absl::InvalidArgumentError("chat template variables must be a JSON object");
  }
  if (json_nests_deeper_than(extra_variables, kMaxVariablesDepth)) {
    return absl::InvalidArgumentError(absl::StrCat("chat template variables nest deeper than ", kMaxVariablesDepth, " levels"));
  }
  nlohmann::json context = special_tokens_;
  nlohmann::json list = nlohmann::json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  context["messages"] = std::move(list);
  context["add_generation_prompt"] = true;
  if (extra_variables.is_object()) {
    for (auto e = extra_variables.begin(); e != extra_variables.end(); ++e) {
      if (e.key() == "messages") return absl::InvalidArgumentError("chat template variables cannot replace 'messages'");
      context[e.key()] = e.value();
    }
  }
  absl::StatusOr<std::string> text = program_->render(jinja::Value::from_json(context));
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("the chat template refused the conversation: ", text.status().message()));
  return text;
}

absl::StatusOr<ChatPrompt> chat_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                       const std::vector<ChatMessage>& messages, const nlohmann::json& extra_variables) {
  FREEKV_ASSIGN_OR_RETURN(std::string text, chat_template.render(messages, extra_variables));
  ChatPrompt p;
  p.ids = tokenizer.encode(text, /*add_special=*/false);
  if (!chat_template.eos_token().empty()) p.end_of_turn_id = tokenizer.token_to_id(chat_template.eos_token());
  return p;
}

}  // namespace freekv
