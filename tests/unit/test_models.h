// Tiny deterministic random models for engine tests, written once per test binary into the build tree.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tools/random_model.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct TinyModel {
  const char* name;
  ModelArch arch;
  int layers, hidden, heads, kv_heads, head_dim, intermediate;
  bool tie = false;
  int sliding_window = 0;  // > 0: layers from first_windowed_layer on attend only that many recent tokens
  int first_windowed_layer = 0;  // 0: every layer (as Mistral's config says)
};

// Returns the directory of the model, writing it on first use.
inline std::string tiny_model_dir(const TinyModel& m) {
  const std::string dir = std::string(FREEKV_BINARY_DIR) + "/test-models/" + m.name;
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  RandomModelSpec spec;
  spec.config = small_model_config(m.arch, m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.intermediate, m.tie);
  spec.config.sliding_window = m.sliding_window;
  if (m.sliding_window > 0) {
    for (int l = 0; l < m.layers; ++l) spec.config.windowed.push_back(l >= m.first_windowed_layer);
  }
  auto tok = make_bpe_tokenizer_json(400);
  EXPECT_TRUE(tok.ok()) << tok.status();
  spec.tokenizer_json = *tok;
  spec.seed = 7;
  // Written aside and renamed into place: ctest runs each test in its own process, several at once, and
  // two of them may make the same model; the directory appears whole, and the second rename fails.
  const std::string aside = dir + ".writing-" + std::to_string(getpid());
  absl::Status s = write_random_model(spec, aside);
  EXPECT_TRUE(s.ok()) << s;
  std::error_code ec;
  std::filesystem::rename(aside, dir, ec);
  if (ec) std::filesystem::remove_all(aside, ec);  // another process made it first
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json")) << dir;
  return dir;
}

}  // namespace freekv
