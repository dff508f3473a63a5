// A model's chat template: the Jinja `chat_template` of its tokenizer_config.json, rendered over a
// conversation exactly as Hugging Face's apply_chat_template renders it (checked against the reference
// renderer in tests/chat). The variables a template sees: messages, add_generation_prompt (always true
// here: a chat request asks for the assistant's reply), the special tokens the config names (bos_token,
// eos_token, unk_token, pad_token; absent ones are undefined), then the caller's extra variables (for
// example enable_thinking for Qwen3).
//
// The rendered text holds the special tokens as text (e.g. "<|begin_of_text|>"): tokenize it without
// adding special tokens again. A turn ends at the model's end-of-sequence ids or at eos_token.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "worker/chat/jinja_template.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ... (the template decides what it accepts)
  std::string content;
};

class ChatTemplate {
 public:
  // From tokenizer_config.json in model_dir. A model without one (no file, or no chat_template in it)
  // loads fine and refuses to render, so a base model still serves completions.
  static absl::StatusOr<ChatTemplate> load(const std::string& model_dir);
  // From the config's JSON; source names the file in errors. chat_template is a string, or a list of
  // {"name", "template"} from which "default" is used.
  static absl::StatusOr<ChatTemplate> from_config(const nlohmann::json& config, const std::string& source);

  bool available() const { return program_.has_value(); }

  // The conversation as the model's prompt text. FAILED_PRECONDITION when the model has no template;
  // INVALID_ARGUMENT when the conversation is empty or the template rejects it (raise_exception's message).
  // extra_variables: a JSON object, or null.
  absl::StatusOr<std::string> render(const std::vector<ChatMessage>& messages,
                                     const nlohmann::json& extra_variables = nullptr) const;

  // The config's eos_token text (e.g. "<|im_end|>", "<|eot_id|>"), empty when it names none.
  const std::string& eos_token() const { return eos_token_; }

 private:
  std::string source_;  // the file, for messages
  std::optional<jinja::Template> program_;
  nlohmann::json special_tokens_ = nlohmann::json::object();  // bos_token etc. as text
  std::string eos_token_;
};

// A conversation as the model's prompt: the rendered text tokenized without adding special tokens (the
// template writes them), and the id of the template's eos_token, which ends the assistant's turn (-1
// when the tokenizer has no such token).
struct ChatPrompt {
  std::vector<int32_t> ids;
  int32_t end_of_turn_id = -1;
};
absl::StatusOr<ChatPrompt> chat_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                       const std::vector<ChatMessage>& messages,
                                       const nlohmann::json& extra_variables = nullptr);

}  // namespace freekv
