#include "tools/request_flags.h"

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
}

absl::StatusOr<std::string> RequestFlags::read_prompt() const {
  if (prompt_file.empty()) return prompt;
  if (!prompt.empty()) return absl::InvalidArgumentError("give --prompt or --prompt-file, not both");
  return read_file(prompt_file);
}

}  // namespace freekv
