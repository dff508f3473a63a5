#include "tools/request_flags.h"

#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace freekv {

void RequestFlags::add_to(ArgParser& p) {
  p.add_string("prompt", &prompt, "prompt text");
  p.add_string("prompt-file", &prompt_file, "read the prompt from this file (UTF-8)");
  p.add_int("max-tokens", &max_tokens, "most tokens to generate");
  p.add_double("temperature", &temperature, "sampling temperature; 0 = greedy");
  p.add_double("top-p", &top_p, "nucleus sampling mass in (0, 1]");
  p.add_int("top-k", &top_k, "sample among the k most likely tokens (0 = all)");
  p.add_int("seed", &seed, "random seed for sampling");
  p.add_list("stop", &stops, "stop before this text (repeatable)");
  p.add_bool("ignore-eos", &ignore_eos, "keep generating after an end-of-sequence token");
  p.add_bool("raw-prompt", &raw_prompt, "do not add the tokenizer's special tokens (e.g. BOS) to the prompt");
  p.add_bool("chat", &chat, "send the prompt as the user's turn, rendered with the model's chat template");
  p.add_string("system", &system, "with --chat: a system message before the conversation");
  p.add_string("messages", &messages_file, "with --chat: the conversation so far, a JSON file [{\"role\", \"content\"}, ...]");
}

absl::StatusOr<std::string> RequestFlags::read_prompt() const {
  if (prompt_file.empty()) return prompt;
  if (!prompt.empty()) return absl::InvalidArgumentError("give --prompt or --prompt-file, not both");
  return read_file(prompt_file);
}

absl::StatusOr<std::vector<ChatMessage>> RequestFlags::chat_messages(const std::string& prompt) const {
  if (!chat) {
    if (!system.empty() || !messages_file.empty()) return absl::InvalidArgumentError("--system and --messages need --chat");
    return std::vector<ChatMessage>{};
  }
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  if (!messages_file.empty()) {
    FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(messages_file));
    const nlohmann::json list = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!list.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(messages_file, ": expected a JSON list of {\"role\", \"content\"}"));
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const nlohmann::json& m = list[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(messages_file, ": message ", i, " needs a string role and content"));
      }
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
  }
  if (!prompt.empty()) messages.push_back({"user", prompt});
  if (messages.empty()) return absl::InvalidArgumentError("--chat needs a conversation: give --prompt, --prompt-file or --messages");
  return messages;
}

}  // namespace freekv
