// Renders every case of a golden file written by render_reference.mjs with freekv's ChatTemplate and
// compares byte for byte with the reference renderer's text; a case the reference refused must be
// refused here too. Prints one line per template; on a difference, the case, the first differing byte
// and both texts around it.
//
//   chat_golden_check GOLDEN.json
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "worker/chat/chat_template.h"

namespace {

std::string around(const std::string& s, size_t at) {
  const size_t from = at > 40 ? at - 40 : 0;
  return nlohmann::json(s.substr(from, 80)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: chat_golden_check GOLDEN.json\n");
    return 2;
  }
  auto text = freekv::read_file(argv[1]);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
    return 1;
  }
  const nlohmann::json golden = nlohmann::json::parse(*text);
  const std::string name = golden.at("name");
  auto chat = freekv::ChatTemplate::from_config(golden.at("config"), argv[1]);
  if (!chat.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(chat.status().message()).c_str());
    return 1;
  }
  int identical = 0, refused_both = 0, failures = 0;
  for (const auto& c : golden.at("cases")) {
    std::vector<freekv::ChatMessage> messages;
    for (const auto& m : c.at("messages")) messages.push_back({m.at("role"), m.at("content")});
    const std::string case_name = c.at("name");
    absl::StatusOr<std::string> ours = chat->render(messages, c.value("variables", nlohmann::json::object()));
    if (c.contains("error")) {
      if (ours.ok()) {
        std::printf("%s / %s: the reference refused (%s) but freekv rendered %s\n", name.c_str(), case_name.c_str(),
                    c["error"].get<std::string>().c_str(), nlohmann::json(*ours).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        ++failures;
      } else {
        ++refused_both;
      }
      continue;
    }
    const std::string expected = c.at("expected");
    if (!ours.ok()) {
      std::printf("%s / %s: freekv refused: %s\n", name.c_str(), case_name.c_str(), std::string(ours.status().message()).c_str());
      ++failures;
      continue;
    }
    if (*ours == expected) {
      ++identical;
      continue;
    }
    size_t at = 0;
    while (at < ours->size() && at < expected.size() && (*ours)[at] == expected[at]) ++at;
    std::printf("%s / %s: differs at byte %zu of %zu (reference) / %zu (freekv)\n  reference: %s\n  freekv:    %s\n",
                name.c_str(), case_name.c_str(), at, expected.size(), ours->size(), around(expected, at).c_str(),
                around(*ours, at).c_str());
    ++failures;
  }
  std::printf("%s: %d identical, %d refused by both, %d different\n", name.c_str(), identical, refused_both, failures);
  return failures == 0 && identical > 0 ? 0 : 1;
}
