// The options of one generation request, shared by `freekv run` (in this process) and `freekv generate`
// (through a coordinator), so both read a prompt and sampling settings the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/cli_args.h"
#include "worker/chat/chat_template.h"
#include "worker/engine/sampler.h"

namespace freekv {

struct RequestFlags {
  std::string prompt, prompt_file;
  int64_t max_tokens = 64, top_k = 0, seed = 0;
  double temperature = 0, top_p = 1;
  bool ignore_eos = false, raw_prompt = false;
  std::vector<std::string> stops;
  bool chat = false;
  std::string system, messages_file;

  void add_to(ArgParser& parser);
  // The prompt text from --prompt or --prompt-file ("" when neither was given); both is an error.
  absl::StatusOr<std::string> read_prompt() const;
  // With --chat, the conversation: --system, the messages of --messages FILE (a JSON list of {"role",
  // "content"}), then the prompt as the user's turn (when not empty). --system or --messages without
  // --chat, or an empty conversation, is an error.
  absl::StatusOr<std::vector<ChatMessage>> chat_messages(const std::string& prompt) const;
  SamplingParams sampling() const { return {temperature, top_k, top_p, uint64_t(seed)}; }
};

}  // namespace freekv
