// Parsing and validation of a Hugging Face config.json (see config.h for the policy).
//
// Defaults for absent or null keys, from the transformers config classes (configuration_<arch>.py):
//
//   key                      Llama        Mistral      Qwen2        Qwen3
//   num_key_value_heads      = heads      8 (*)        32 (*)       32 (*)
//   head_dim                 hidden/heads hidden/heads hidden/heads 128
//   max_position_embeddings  2048         131072       32768        32768
//   rms_norm_eps             1e-6         1e-6         1e-6         1e-6
//   rope_theta               10000        10000        10000        10000
//   tie_word_embeddings      false        false        false        false
//   attention_bias           false        (no key)     (no key)     false
//
// (*) The class signature default; an explicit null means "= num_attention_heads" in every class.
// PretrainedConfig's own tie_word_embeddings default is true, but all four classes pass false.
// Qwen2 has no head_dim key (its attention takes getattr(config, "head_dim", hidden/heads)), and
// always biases q/k/v, never o. Mistral never biases attention, so attention_bias is ignored there,
// as transformers ignores it. attention_bias on Llama and Qwen3 biases q, k, v *and* o.
// Token ids are the exception: an absent bos/eos_token_id stays absent (config.h), not the class
// default (1/2 for Llama and Mistral), which fits only the Llama-2 tokenizer; the tokenizer files
// and generation_config.json are the better source when config.json is silent.
#include "worker/model/config.h"

#include <array>
#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/file_util.h"
#include "worker/model/json_util.h"

namespace freekv {
namespace {

using model_internal::describe_json;
using model_internal::find_non_null;
using nlohmann::json;

struct ArchInfo {
  ModelArch arch;
  const char* hf_name;
  const char* model_type;
  int default_kv_heads;  // 0: num_attention_heads
  int default_head_dim;  // 0: hidden / heads
  int default_max_positions;
};

constexpr std::array<ArchInfo, 4> kArchs = {{
    {ModelArch::kLlama, "LlamaForCausalLM", "llama", 0, 0, 2048},
    {ModelArch::kQwen2, "Qwen2ForCausalLM", "qwen2", 32, 0, 32768},
    {ModelArch::kQwen3, "Qwen3ForCausalLM", "qwen3", 32, 128, 32768},
    {ModelArch::kMistral, "MistralForCausalLM", "mistral", 8, 0, 131072},
}};

const ArchInfo& arch_info(ModelArch arch) {
  for (const ArchInfo& a : kArchs)
    if (a.arch == arch) return a;
  return kArchs[0];
}

std::string supported_list() {
  return "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM";
}

// Upper bounds far above any real model; they exist so that products of sizes computed downstream in
// int64 (vocab × hidden, heads × head_dim × positions) cannot overflow on a hostile config.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxWidth = 1 << 20;  // hidden, intermediate, heads × head_dim
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxPositions = 1 << 26;  // 64 Mi tokens
constexpr int64_t kMaxHeads = 4096;

// Reads one config.json; every error names the source file and the key (with its path for nested
// keys, e.g. "rope_scaling.factor"), what was expected and what was found.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  absl::Status error(absl::string_view key, absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": key '", key, "': ", message));
  }
  absl::Status type_error(absl::string_view key, absl::string_view expected, const json& got) const {
    return error(key, absl::StrCat("expected ", expected, ", got ", describe_json(got)));
  }
  absl::Status missing(absl::string_view key, absl::string_view expected) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": missing required key '", key, "' (", expected, ")"));
  }

  // An integer (an integral float such as 4096.0 is accepted: some exporters write those).
  absl::StatusOr<int64_t> integer(absl::string_view path, const json& v) const {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return error(path, absl::StrCat("integer ", u, " is out of range"));
      return int64_t(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    return type_error(path, "an integer", v);
  }

  // An integer in [lo, hi]; `what` describes it in the message ("a positive integer").
  absl::StatusOr<int> int_in(absl::string_view path, const json& v, int64_t lo, int64_t hi,
                             absl::string_view what) const {
    FREEKV_ASSIGN_OR_RETURN(int64_t x, integer(path, v));
    if (x < lo || x > hi)
      return error(path, absl::StrCat("expected ", what, " in [", lo, ", ", hi, "], got ", x));
    return int(x);
  }

  absl::StatusOr<int> required_size(const json& obj, const std::string& key, int64_t hi) const {
    const json* v = find_non_null(obj, key);
    if (v == nullptr) return missing(key, "a positive integer");
    return int_in(key, *v, 1, hi, "a positive integer");
  }

  absl::StatusOr<int> optional_size(const json& obj, const std::string& key, int64_t hi, int fallback) const {
    const json* v = find_non_null(obj, key);
    if (v == nullptr) return fallback;
    return int_in(key, *v, 1, hi, "a positive integer");
  }

  // A finite number > 0.
  absl::StatusOr<double> positive_number(absl::string_view path, const json& v) const {
    if (!v.is_number()) return type_error(path, "a positive number", v);
    double d = v.get<double>();
    if (!std::isfinite(d) || d <= 0) return error(path, absl::StrCat("expected a positive number, got ", d));
    return d;
  }

  absl::StatusOr<double> optional_positive(const json& obj, const std::string& key, double fallback) const {
    const json* v = find_non_null(obj, key);
    if (v == nullptr) return fallback;
    return positive_number(key, *v);
  }

  absl::StatusOr<bool> optional_bool(const json& obj, const std::string& key, bool fallback) const {
    const json* v = find_non_null(obj, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return type_error(key, "true or false", *v);
    return v->get<bool>();
  }

  const std::string& source() const { return source_; }

 private:
  const std::string& source_;
};

absl::StatusOr<const ArchInfo*> read_arch(const Reader& r, const json& root, std::string* arch_name) {
  if (const json* archs = find_non_null(root, "architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
      return r.type_error("architectures", "a non-empty array of strings", *archs);
    // transformers instantiates architectures[0]; the rest (rarely present) name alternatives.
    const std::string& name = (*archs)[0].get_ref<const std::string&>();
    for (const ArchInfo& a : kArchs) {
      if (name == a.hf_name) {
        *arch_name = name;
        return &a;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(r.source(), ": architecture ", describe_json((*archs)[0]),
                                                   " is not supported; supported: ", supported_list()));
  }
  // Configs written by hand or by old tools may carry only model_type.
  if (const json* type = find_non_null(root, "model_type")) {
    if (!type->is_string()) return r.type_error("model_type", "a string", *type);
    for (const ArchInfo& a : kArchs) {
      if (type->get_ref<const std::string&>() == a.model_type) {
        *arch_name = std::string(a.hf_name);
        return &a;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(r.source(), ": no 'architectures' key, and model_type ",
                                                   describe_json(*type),
                                                   " is not supported; supported: ", supported_list()));
  }
  return r.missing("architectures",
                   absl::StrCat("e.g. [\"LlamaForCausalLM\"]; supported: ", supported_list()));
}

absl::StatusOr<DType> read_dtype(const Reader& r, const json& root) {
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype". The newer key wins.
  std::string key = "dtype";
  const json* v = find_non_null(root, key);
  if (v == nullptr) {
    key = "torch_dtype";
    v = find_non_null(root, key);
  }
  if (v == nullptr) return DType::kBF16;
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    if (s == "bfloat16") return DType::kBF16;
    if (s == "float16") return DType::kF16;
    if (s == "float32") return DType::kF32;
  }
  return r.type_error(key, "one of \"bfloat16\", \"float16\", \"float32\"", *v);
}

// rope_scaling (or transformers v5's rope_parameters): null, {"rope_type"|"type": "default"},
// {"rope_type": "linear", factor}, {"rope_type": "llama3", factor, low_freq_factor,
// high_freq_factor, original_max_position_embeddings}.
absl::StatusOr<RopeScaling> read_rope_scaling(const Reader& r, const json& v, const std::string& key) {
  RopeScaling rs;
  if (!v.is_object()) return r.type_error(key, "null or an object", v);
  // transformers: rope_type = rope_scaling.get("rope_type", rope_scaling.get("type")).
  std::string type_key = key + ".rope_type";
  const json* type = find_non_null(v, "rope_type");
  if (type == nullptr) {
    type_key = key + ".type";
    type = find_non_null(v, "type");
  }
  if (type == nullptr) return r.missing(key + ".rope_type", "\"linear\" or \"llama3\"");
  if (!type->is_string()) return r.type_error(type_key, "a string", *type);
  const std::string& name = type->get_ref<const std::string&>();

  auto number = [&](const std::string& field) -> absl::StatusOr<double> {
    const json* f = find_non_null(v, field);
    if (f == nullptr)
      return r.missing(key + "." + field,
                       absl::StrCat("a positive number, required by rope_type '", name, "'"));
    return r.positive_number(key + "." + field, *f);
  };

  if (name == "default") return rs;
  if (name == "linear") {
    rs.kind = RopeScalingKind::kLinear;
    FREEKV_ASSIGN_OR_RETURN(rs.factor, number("factor"));
    return rs;
  }
  if (name == "llama3") {
    rs.kind = RopeScalingKind::kLlama3;
    FREEKV_ASSIGN_OR_RETURN(rs.factor, number("factor"));
    FREEKV_ASSIGN_OR_RETURN(rs.low_freq_factor, number("low_freq_factor"));
    FREEKV_ASSIGN_OR_RETURN(rs.high_freq_factor, number("high_freq_factor"));
    // The llama3 ramp divides by (high - low); equal factors would divide by zero.
    if (rs.high_freq_factor <= rs.low_freq_factor)
      return r.error(key + ".high_freq_factor",
                     absl::StrCat("must be greater than low_freq_factor ", rs.low_freq_factor, ", got ",
                                  rs.high_freq_factor));
    std::string omp = key + ".original_max_position_embeddings";
    const json* o = find_non_null(v, "original_max_position_embeddings");
    if (o == nullptr) return r.missing(omp, "a positive integer, required by rope_type 'llama3'");
    FREEKV_ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                            r.int_in(omp, *o, 1, kMaxPositions, "a positive integer"));
    return rs;
  }
  return r.error(type_key, absl::StrCat("rope scaling type ", describe_json(*type),
                                        " is not supported; supported: linear, llama3 (or null / default)"));
}

absl::StatusOr<ModelConfig> parse_object(const Reader& r, const json& root) {
  if (!root.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(r.source(), ": expected a JSON object at the top level, got ", describe_json(root)));
  ModelConfig c;
  FREEKV_ASSIGN_OR_RETURN(const ArchInfo* arch, read_arch(r, root, &c.arch_name));
  c.arch = arch->arch;

  FREEKV_ASSIGN_OR_RETURN(c.n_layers, r.required_size(root, "num_hidden_layers", kMaxLayers));
  FREEKV_ASSIGN_OR_RETURN(c.hidden, r.required_size(root, "hidden_size", kMaxWidth));
  FREEKV_ASSIGN_OR_RETURN(c.n_heads, r.required_size(root, "num_attention_heads", kMaxHeads));
  FREEKV_ASSIGN_OR_RETURN(c.intermediate, r.required_size(root, "intermediate_size", kMaxWidth));
  FREEKV_ASSIGN_OR_RETURN(c.vocab, r.required_size(root, "vocab_size", kMaxVocab));
  FREEKV_ASSIGN_OR_RETURN(c.max_positions, r.optional_size(root, "max_position_embeddings", kMaxPositions,
                                                           arch->default_max_positions));

  // num_key_value_heads: absent -> the class default; explicit null -> num_attention_heads.
  bool kv_defaulted = false;
  auto kv_it = root.find("num_key_value_heads");
  if (kv_it == root.end()) {
    c.n_kv_heads = arch->default_kv_heads != 0 ? arch->default_kv_heads : c.n_heads;
    kv_defaulted = true;
  } else if (kv_it->is_null()) {
    c.n_kv_heads = c.n_heads;
  } else {
    FREEKV_ASSIGN_OR_RETURN(c.n_kv_heads,
                            r.int_in("num_key_value_heads", *kv_it, 1, kMaxHeads, "a positive integer"));
  }
  if (c.n_heads % c.n_kv_heads != 0)
    return r.error(
        "num_key_value_heads",
        absl::StrCat(
            "num_attention_heads ", c.n_heads, " is not a multiple of num_key_value_heads ", c.n_kv_heads,
            kv_defaulted ? absl::StrCat(" (absent, so ", arch->hf_name, "'s default; write it explicitly)")
                         : ""));

  if (const json* hd = find_non_null(root, "head_dim")) {
    FREEKV_ASSIGN_OR_RETURN(c.head_dim, r.int_in("head_dim", *hd, 1, kMaxWidth, "a positive integer"));
  } else if (arch->default_head_dim != 0) {
    c.head_dim = arch->default_head_dim;
  } else {
    if (c.hidden % c.n_heads != 0)
      return r.missing("head_dim",
                       absl::StrCat("hidden_size ", c.hidden, " is not a multiple of num_attention_heads ",
                                    c.n_heads, ", so head_dim must be given"));
    c.head_dim = c.hidden / c.n_heads;
  }
  // RoPE rotates pairs of dimensions, so head_dim must be even; the kernels are written for head
  // sizes of real models (the CUDA attention is tuned for 64 and 128, the CPU path takes any).
  if (c.head_dim % 2 != 0 || c.head_dim < 32 || c.head_dim > 256)
    return r.error("head_dim", absl::StrCat("expected an even integer in [32, 256], got ", c.head_dim));
  if (int64_t(c.n_heads) * c.head_dim > kMaxWidth)
    return r.error("head_dim", absl::StrCat("num_attention_heads × head_dim = ",
                                            int64_t(c.n_heads) * c.head_dim, " exceeds ", kMaxWidth));

  FREEKV_ASSIGN_OR_RETURN(c.rms_eps, r.optional_positive(root, "rms_norm_eps", 1e-6));

  // transformers v5 moved rope_theta and the scaling into "rope_parameters"; read either layout.
  const json* rope_params = find_non_null(root, "rope_parameters");
  if (rope_params != nullptr && !rope_params->is_object())
    return r.type_error("rope_parameters", "null or an object", *rope_params);
  if (const json* theta = find_non_null(root, "rope_theta")) {
    FREEKV_ASSIGN_OR_RETURN(c.rope_theta, r.positive_number("rope_theta", *theta));
  } else if (const json* theta2 = rope_params ? find_non_null(*rope_params, "rope_theta") : nullptr) {
    FREEKV_ASSIGN_OR_RETURN(c.rope_theta, r.positive_number("rope_parameters.rope_theta", *theta2));
  }
  if (const json* rs = find_non_null(root, "rope_scaling")) {
    FREEKV_ASSIGN_OR_RETURN(c.rope_scaling, read_rope_scaling(r, *rs, "rope_scaling"));
  } else if (rope_params != nullptr &&
             (rope_params->contains("rope_type") || rope_params->contains("type"))) {
    FREEKV_ASSIGN_OR_RETURN(c.rope_scaling, read_rope_scaling(r, *rope_params, "rope_parameters"));
  }

  FREEKV_ASSIGN_OR_RETURN(c.tie_embeddings, r.optional_bool(root, "tie_word_embeddings", false));
  switch (c.arch) {
    case ModelArch::kQwen2:
      c.qkv_bias = true;
      break;
    case ModelArch::kQwen3:
      c.qk_norm = true;
      [[fallthrough]];
    case ModelArch::kLlama: {
      FREEKV_ASSIGN_OR_RETURN(bool bias, r.optional_bool(root, "attention_bias", false));
      c.qkv_bias = c.o_bias = bias;
      break;
    }
    case ModelArch::kMistral:
      break;
  }
  if (c.arch == ModelArch::kLlama) {
    FREEKV_ASSIGN_OR_RETURN(bool mlp_bias, r.optional_bool(root, "mlp_bias", false));
    if (mlp_bias) return r.error("mlp_bias", "biases on the MLP projections are not supported");
  }
  if (const json* act = find_non_null(root, "hidden_act")) {
    if (!act->is_string() || act->get_ref<const std::string&>() != "silu")
      return r.error("hidden_act",
                     absl::StrCat("expected \"silu\" (freekv implements SwiGLU), got ", describe_json(*act)));
  }
  if (find_non_null(root, "quantization_config") != nullptr)
    return r.error("quantization_config",
                   "quantized checkpoints are not supported (need bf16, f16 or f32 weights)");
  // Sliding windows, as Hugging Face decides which layers have one: layer_types when given; Mistral:
  // every layer once sliding_window is set; Qwen2/Qwen3: with use_sliding_window, the layers from
  // max_window_layers (default 28) on.
  int window = 0;
  if (const json* sw = find_non_null(root, "sliding_window")) {
    FREEKV_ASSIGN_OR_RETURN(window, r.int_in("sliding_window", *sw, 1, INT_MAX, "a positive integer"));
  }
  FREEKV_ASSIGN_OR_RETURN(bool use_window, r.optional_bool(root, "use_sliding_window", false));
  if (const json* types = find_non_null(root, "layer_types")) {
    if (!types->is_array() || int(types->size()) != c.n_layers) {
      return r.error("layer_types", absl::StrCat("expected a list of ", c.n_layers, " layer types"));
    }
    c.windowed.assign(size_t(c.n_layers), false);
    for (size_t i = 0; i < types->size(); ++i) {
      const json& t = (*types)[i];
      if (t == "sliding_attention") c.windowed[i] = true;
      else if (t != "full_attention") {
        return r.error(absl::StrCat("layer_types[", i, "]"),
                       absl::StrCat("expected \"full_attention\" or \"sliding_attention\", got ", describe_json(t)));
      }
    }
    if (c.windowed_layers() > 0 && window == 0) {
      return r.error("sliding_window", "layer_types names sliding_attention layers, but the window size is missing");
    }
  } else if (c.arch == ModelArch::kMistral) {
    c.windowed.assign(size_t(c.n_layers), window > 0);
  } else if (c.arch != ModelArch::kLlama && use_window && window > 0) {
    FREEKV_ASSIGN_OR_RETURN(int first, r.optional_size(root, "max_window_layers", 1 << 20, 28));
    c.windowed.assign(size_t(c.n_layers), false);
    for (int i = first; i < c.n_layers; ++i) c.windowed[size_t(i)] = true;
  }
  if (c.windowed_layers() == 0) c.windowed.clear();
  c.sliding_window = c.windowed.empty() ? 0 : window;

  FREEKV_ASSIGN_OR_RETURN(c.dtype, read_dtype(r, root));

  if (const json* eos = find_non_null(root, "eos_token_id")) {
    if (eos->is_array()) {
      for (size_t i = 0; i < eos->size(); ++i) {
        FREEKV_ASSIGN_OR_RETURN(
            int id, r.int_in(absl::StrCat("eos_token_id[", i, "]"), (*eos)[i], 0, INT_MAX, "a token id"));
        c.eos_token_ids.push_back(id);
      }
    } else if (eos->is_number()) {
      FREEKV_ASSIGN_OR_RETURN(int id, r.int_in("eos_token_id", *eos, 0, INT_MAX, "a token id"));
      c.eos_token_ids.push_back(id);
    } else {
      return r.type_error("eos_token_id", "a token id or a list of them", *eos);
    }
  }
  if (const json* bos = find_non_null(root, "bos_token_id")) {
    FREEKV_ASSIGN_OR_RETURN(c.bos_token_id, r.int_in("bos_token_id", *bos, 0, INT_MAX, "a token id"));
  }
  return c;
}

}  // namespace

std::string ModelConfig::context_limit_source() const {
  if (sliding_window > 0 && !windows_attended && sliding_window < max_positions) {
    return absl::StrCat("sliding_window ", sliding_window, ": ", windowed_layers(), " of its ", n_layers,
                        " layers attend only that many recent tokens, and this engine attends the whole context, so "
                        "beyond it the output would leave the model's (the CPU engine attends the windows; "
                        "--attend-beyond-window accepts the difference)");
  }
  return absl::StrCat("max_position_embeddings ", max_positions);
}

std::string_view model_arch_hf_name(ModelArch arch) { return arch_info(arch).hf_name; }

absl::StatusOr<ModelConfig> parse_model_config(std::string_view json_text, const std::string& source) {
  FREEKV_ASSIGN_OR_RETURN(json root, model_internal::parse_json(json_text, source));
  Reader reader(source);
  // Reading only inspects values, but keep the promise that no exception leaves this module.
  try {
    return parse_object(reader, root);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(source, ": unexpected error while reading the config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> load_model_config(const std::string& config_json_path) {
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(config_json_path));
  return parse_model_config(text, config_json_path);
}

std::string model_config_to_json(const ModelConfig& c) {
  const ArchInfo& arch = arch_info(c.arch);
  json j = json::object();
  j["architectures"] = json::array({std::string(arch.hf_name)});
  j["model_type"] = std::string(arch.model_type);
  j["num_hidden_layers"] = c.n_layers;
  j["hidden_size"] = c.hidden;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["intermediate_size"] = c.intermediate;
  j["vocab_size"] = c.vocab;
  j["max_position_embeddings"] = c.max_positions;
  if (c.sliding_window > 0) {  // Mistral windows every layer; otherwise layer_types says which
    j["sliding_window"] = c.sliding_window;
    if (c.arch != ModelArch::kMistral || c.windowed_layers() < c.n_layers) {
      j["use_sliding_window"] = true;
      j["layer_types"] = json::array();
      for (bool w : c.windowed) j["layer_types"].push_back(w ? "sliding_attention" : "full_attention");
    }
  }
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  switch (c.rope_scaling.kind) {
    case RopeScalingKind::kNone:
      j["rope_scaling"] = nullptr;
      break;
    case RopeScalingKind::kLinear:
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
      break;
    case RopeScalingKind::kLlama3:
      j["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", c.rope_scaling.factor},
          {"low_freq_factor", c.rope_scaling.low_freq_factor},
          {"high_freq_factor", c.rope_scaling.high_freq_factor},
          {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
      break;
  }
  j["tie_word_embeddings"] = c.tie_embeddings;
  // Qwen2 always biases q/k/v and Mistral never does: only Llama and Qwen3 have the key.
  if (c.arch == ModelArch::kLlama || c.arch == ModelArch::kQwen3) j["attention_bias"] = c.qkv_bias;
  switch (c.dtype) {
    case DType::kBF16:
      j["torch_dtype"] = "bfloat16";
      break;
    case DType::kF16:
      j["torch_dtype"] = "float16";
      break;
    case DType::kF32:
      j["torch_dtype"] = "float32";
      break;
  }
  if (c.bos_token_id >= 0)
    j["bos_token_id"] = c.bos_token_id;
  else
    j["bos_token_id"] = nullptr;
  if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else
    j["eos_token_id"] = c.eos_token_ids;
  // arch_name is not written: the name written is the canonical one, which is what parsing yields.
  return j.dump(2) + "\n";
}

}  // namespace freekv
