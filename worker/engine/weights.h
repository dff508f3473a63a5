// The model's weights as the forward pass uses them: views into the memory-mapped safetensors
// (no copy; each tensor keeps its stored dtype), plus small fp32 copies of biases and the RoPE
// frequencies with the configured scaling folded in.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "worker/model/config.h"
#include "worker/model/safetensors.h"

namespace freekv {

struct WeightRef {
  const void* data = nullptr;  // [rows, cols] row-major, as stored in the checkpoint
  DType dtype = DType::kBF16;
};

struct LayerWeights {
  WeightRef attn_norm;                  // [hidden]
  WeightRef wq, wk, wv, wo;             // [heads·hd, hidden], [kv·hd, hidden] ×2, [hidden, heads·hd]
  std::vector<float> bq, bk, bv;        // [heads·hd], [kv·hd] ×2; empty without qkv bias
  std::vector<float> bo;                // [hidden]; empty unless attention_bias biases o_proj
  WeightRef q_norm, k_norm;             // [hd]; data null unless Qwen3
  WeightRef mlp_norm;                   // [hidden]
  WeightRef w_gate, w_up, w_down;       // [inter, hidden] ×2, [hidden, inter]
};

struct ModelWeights {
  ModelConfig config;
  std::string dir;
  std::unique_ptr<TensorStore> store;  // owns the mappings every WeightRef points into
  WeightRef embed;                     // [vocab, hidden]
  WeightRef final_norm;                // [hidden]
  WeightRef lm_head;                   // [vocab, hidden] (the embedding when tied)
  std::vector<LayerWeights> layers;
  std::vector<float> rope_inv_freq;    // [hd/2] radians per position
  size_t weight_bytes = 0;             // bytes one forward step reads from the weights
};

// Loads config.json and the safetensors of a Hugging Face model directory and checks every tensor's
// presence, shape and dtype. Errors name the file, the tensor, what was expected and what was found.
absl::StatusOr<std::unique_ptr<ModelWeights>> load_model_weights(const std::string& model_dir);

// inv_freq[i] = theta^(-2i/hd), then linear or llama3 scaling (Hugging Face's rules).
std::vector<float> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace freekv
