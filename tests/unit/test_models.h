// Tiny deterministic random models for engine tests, written once per test binary into the build tree.
#pragma once

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
};

// Returns the directory of the model, writing it on first use.
inline std::string tiny_model_dir(const TinyModel& m) {
  const std::string dir = std::string(FREEKV_BINARY_DIR) + "/test-models/" + m.name;
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  RandomModelSpec spec;
  ModelConfig& c = spec.config;
  c.arch = m.arch;
  c.arch_name = std::string(model_arch_hf_name(m.arch));
  c.qkv_bias = m.arch == ModelArch::kQwen2;
  c.qk_norm = m.arch == ModelArch::kQwen3;
  c.n_layers = m.layers;
  c.hidden = m.hidden;
  c.n_heads = m.heads;
  c.n_kv_heads = m.kv_heads;
  c.head_dim = m.head_dim;
  c.intermediate = m.intermediate;
  c.max_positions = 4096;
  c.rope_theta = 10000;
  c.rms_eps = 1e-5;
  c.tie_embeddings = m.tie;
  c.dtype = DType::kBF16;
  auto tok = make_bpe_tokenizer_json(400);
  EXPECT_TRUE(tok.ok()) << tok.status();
  spec.tokenizer_json = *tok;
  spec.seed = 7;
  absl::Status s = write_random_model(spec, dir);
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

}  // namespace freekv
