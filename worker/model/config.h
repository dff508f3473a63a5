// A Hugging Face config.json, parsed and validated into the model geometry the engine runs.
// Supported architectures: LlamaForCausalLM (rope scaling none | linear | llama3), Qwen2ForCausalLM
// (bias on the q/k/v projections), Qwen3ForCausalLM (RMSNorm on q and k per head),
// MistralForCausalLM. Anything else is refused with a message naming what is unsupported.
//
// Keys that are absent (or null) take the default of the architecture's Hugging Face config class, so
// a checkpoint means here what it means in transformers (config.cc lists them per architecture).
// Keys that change the computation in a way freekv does not implement (another activation, MLP
// biases, yarn/dynamic RoPE, quantization) are refused rather than ignored. A sliding window
// (Mistral, Qwen2) is accepted and not applied: freekv attends the full context through its budget.
// All errors are INVALID_ARGUMENT (NOT_FOUND for a missing file) and name the file and the key.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace freekv {

enum class ModelArch { kLlama, kQwen2, kQwen3, kMistral };
enum class RopeScalingKind { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::kNone;
  double factor = 1.0;                        // linear and llama3
  double low_freq_factor = 1.0;               // llama3
  double high_freq_factor = 4.0;              // llama3
  int original_max_position_embeddings = 8192;  // llama3

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string arch_name;          // as written in config.json "architectures"[0]
  int n_layers = 0;               // num_hidden_layers
  int hidden = 0;                 // hidden_size
  int n_heads = 0;                // num_attention_heads
  int n_kv_heads = 0;             // num_key_value_heads (defaults to n_heads)
  int head_dim = 0;               // head_dim, or hidden / n_heads when absent
  int intermediate = 0;           // intermediate_size
  int vocab = 0;                  // vocab_size
  int max_positions = 0;          // max_position_embeddings
  double rms_eps = 1e-6;          // rms_norm_eps
  double rope_theta = 10000.0;    // rope_theta
  RopeScaling rope_scaling;
  bool tie_embeddings = false;    // tie_word_embeddings
  bool qkv_bias = false;          // Qwen2 (and attention_bias: true on Llama, Qwen3)
  bool o_bias = false;            // attention_bias: true on Llama/Qwen3 also biases o_proj (HF)
  bool qk_norm = false;           // Qwen3
  DType dtype = DType::kBF16;     // torch_dtype: the weights' storage type
  std::vector<int> eos_token_ids; // eos_token_id (int or list); may be empty
  int bos_token_id = -1;          // -1 when absent
  int sliding_window = 0;         // tokens a windowed layer attends; 0: no layer has a window
  std::vector<bool> windowed;     // [n_layers] which layers have that window (Mistral: all; Qwen2/3: from
                                  // max_window_layers on; layer_types); empty when none has
  // Set by an engine that attends the windows (the CPU engine). Without it every layer attends the whole
  // context, which equals the model's windowed attention only while a sequence fits the window.
  bool windows_attended = false;

  int windowed_layers() const { return int(std::count(windowed.begin(), windowed.end(), true)); }
  // Positions a request may use, generated tokens included: max_positions, or the sliding window when
  // it is smaller and the windows are not attended.
  int context_limit() const {
    return sliding_window > 0 && !windows_attended ? std::min(max_positions, sliding_window) : max_positions;
  }
  // What sets context_limit(), for messages: "max_position_embeddings N" or the window and what to do.
  std::string context_limit_source() const;

  bool operator==(const ModelConfig&) const = default;
};

// source names the file in error messages.
absl::StatusOr<ModelConfig> parse_model_config(std::string_view json_text, const std::string& source);
absl::StatusOr<ModelConfig> load_model_config(const std::string& config_json_path);

// Serialises a config.json that parse_model_config reads back to the same ModelConfig (mkmodel).
std::string model_config_to_json(const ModelConfig& config);

std::string_view model_arch_hf_name(ModelArch arch);  // "LlamaForCausalLM", ...

}  // namespace freekv
