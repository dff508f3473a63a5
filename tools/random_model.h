// Deterministic random models in Hugging Face format, for tests, benchmarks and as the default
// model until a trained one exists. Same options and seed ⇒ the same bytes on every machine.
//
// Weights are drawn uniformly with the standard deviation of a sensible initialisation, scaled so the
// residual stream keeps its size through the layers and the logits come out peaked (std ≈ 4), not flat,
// which makes greedy decoding a sharp test of the engine.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "worker/model/config.h"

namespace freekv {

struct RandomModelSpec {
  ModelConfig config;          // geometry, arch flags, dtype; vocab is taken from the tokenizer
  std::string tokenizer_json;  // contents of tokenizer.json; its vocabulary size sets config.vocab
  uint64_t seed = 0;
  int shards = 1;              // > 1: model-0000i-of-0000n.safetensors + model.safetensors.index.json
  std::string chat_template;   // Jinja text for tokenizer_config.json's chat_template; empty: none
};

// The config of a small model for tests: the geometry given, the flags `arch` implies (Qwen2's q/k/v
// biases, Qwen3's q/k norms), 4096 positions, RoPE θ 10000, RMS eps 1e-5, bf16 weights.
ModelConfig small_model_config(ModelArch arch, int layers, int hidden, int heads, int kv_heads, int head_dim,
                               int intermediate, bool tie_embeddings);

// Writes config.json, the safetensors, tokenizer.json, tokenizer_config.json and
// generation_config.json into out_dir (created if missing).
absl::Status write_random_model(const RandomModelSpec& spec, const std::string& out_dir);

}  // namespace freekv
