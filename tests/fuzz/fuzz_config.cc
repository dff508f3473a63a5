// Fuzz target: parse_model_config over arbitrary bytes as config.json text. Beyond "never crashes",
// it checks the writer's contract: whatever the parser accepts, model_config_to_json writes back a
// config.json that parses to the same ModelConfig.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "worker/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = freekv::parse_model_config(text, "fuzz.json");
  if (!config.ok()) return 0;
  std::string written = freekv::model_config_to_json(*config);
  auto again = freekv::parse_model_config(written, "rewritten.json");
  if (!again.ok() || !(*again == *config)) {
    std::fprintf(stderr, "config round trip failed: %s\n%s\n",
                 again.ok() ? "configs differ" : std::string(again.status().message()).c_str(),
                 written.c_str());
    std::abort();
  }
  return 0;
}
