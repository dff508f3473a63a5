// Fuzz target: a chat template from arbitrary bytes (tokenizer_config.json's chat_template comes with a
// downloaded model), parsed and, when it parses, rendered over a fixed conversation. Beyond "never
// crashes" (deep nesting and long chains included): rendering is deterministic, and a template without
// braces renders to its own text less the one trailing newline Hugging Face's renderers drop.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "worker/chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto chat = freekv::ChatTemplate::from_config({{"chat_template", text}, {"bos_token", "<s>"}, {"eos_token", "</s>"}},
                                                "fuzz.json");
  if (!chat.ok()) return 0;
  const std::vector<freekv::ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "{{ not a tag }} é 🙂"}, {"assistant", "<think>\nx\n</think>\n\nok"}, {"user", ""}};
  auto first = chat->render(messages);
  auto second = chat->render(messages);
  if (first.ok() != second.ok() || (first.ok() && *first != *second)) {
    std::fprintf(stderr, "rendering the same conversation twice gave different results\n");
    std::abort();
  }
  if (text.find_first_of("{}") == std::string::npos && first.ok()) {
    const std::string want = !text.empty() && text.back() == '\n' ? text.substr(0, text.size() - 1) : text;
    if (*first != want) {
      std::fprintf(stderr, "a template without tags did not render to itself\n");
      std::abort();
    }
  }
  return 0;
}
