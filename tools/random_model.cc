#include "tools/random_model.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/model/safetensors.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {
namespace {

// splitmix64: tiny, fast, and the same on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform on [-1, 1).
  float uniform() { return float(double(next() >> 11) * (2.0 / 9007199254740992.0) - 1.0); }

 private:
  uint64_t s_;
};

// A tensor of `shape` with entries mean + std·U where U has unit variance (uniform on ±√3).
TensorToWrite random_tensor(Rng& rng, const std::string& name, DType dtype, std::vector<int64_t> shape,
                            float mean, float std) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  TensorToWrite t{name, dtype, shape, std::string(size_t(n) * dtype_size(dtype), '\0')};
  const float a = std * std::sqrt(3.f);
  for (int64_t i = 0; i < n; ++i) store_from_f32(t.bytes.data(), dtype, size_t(i), mean + a * rng.uniform());
  return t;
}

std::string find_token(const Tokenizer& tok, std::initializer_list<const char*> names, int32_t* id) {
  for (const char* n : names) {
    if ((*id = tok.token_to_id(n)) >= 0) return n;
  }
  *id = -1;
  return "";
}

}  // namespace

ModelConfig small_model_config(ModelArch arch, int layers, int hidden, int heads, int kv_heads, int head_dim,
                               int intermediate, bool tie_embeddings) {
  ModelConfig c;
  c.arch = arch;
  c.arch_name = std::string(model_arch_hf_name(arch));
  c.qkv_bias = arch == ModelArch::kQwen2;
  c.qk_norm = arch == ModelArch::kQwen3;
  c.n_layers = layers;
  c.hidden = hidden;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.intermediate = intermediate;
  c.max_positions = 4096;
  c.rope_theta = 10000;
  c.rms_eps = 1e-5;
  c.tie_embeddings = tie_embeddings;
  c.dtype = DType::kBF16;
  return c;
}

absl::Status write_random_model(const RandomModelSpec& spec, const std::string& out_dir) {
  FREEKV_ASSIGN_OR_RETURN(auto tok, Tokenizer::from_json(spec.tokenizer_json, "tokenizer.json"));
  ModelConfig c = spec.config;
  c.vocab = tok->vocab_size();
  int32_t bos, eos;
  std::string bos_text = find_token(*tok, {"<|begin_of_text|>", "<s>"}, &bos);
  std::string eos_text = find_token(*tok, {"<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "</s>"}, &eos);
  c.bos_token_id = bos;
  c.eos_token_ids.clear();
  if (eos >= 0) c.eos_token_ids.push_back(eos);
  if (spec.shards < 1) return absl::InvalidArgumentError("shards must be >= 1");

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create '", out_dir, "': ", ec.message()));

  Rng rng(spec.seed);
  const int64_t h = c.hidden, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd, kv_dim = int64_t(c.n_kv_heads) * hd;
  const float proj = 1.f / std::sqrt(float(h));
  const float out_proj = 1.f / std::sqrt(float(q_dim) * 2 * c.n_layers);
  const float down = 1.f / std::sqrt(float(c.intermediate) * 2 * c.n_layers);
  std::vector<TensorToWrite> ts;
  ts.push_back(random_tensor(rng, "model.embed_tokens.weight", c.dtype, {c.vocab, h}, 0.f, 1.f));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    ts.push_back(random_tensor(rng, p + "input_layernorm.weight", c.dtype, {h}, 1.f, 0.1f));
    ts.push_back(random_tensor(rng, p + "self_attn.q_proj.weight", c.dtype, {q_dim, h}, 0.f, proj));
    ts.push_back(random_tensor(rng, p + "self_attn.k_proj.weight", c.dtype, {kv_dim, h}, 0.f, proj));
    ts.push_back(random_tensor(rng, p + "self_attn.v_proj.weight", c.dtype, {kv_dim, h}, 0.f, proj));
    if (c.qkv_bias) {
      ts.push_back(random_tensor(rng, p + "self_attn.q_proj.bias", c.dtype, {q_dim}, 0.f, 0.1f));
      ts.push_back(random_tensor(rng, p + "self_attn.k_proj.bias", c.dtype, {kv_dim}, 0.f, 0.1f));
      ts.push_back(random_tensor(rng, p + "self_attn.v_proj.bias", c.dtype, {kv_dim}, 0.f, 0.1f));
    }
    if (c.qk_norm) {
      ts.push_back(random_tensor(rng, p + "self_attn.q_norm.weight", c.dtype, {hd}, 1.f, 0.1f));
      ts.push_back(random_tensor(rng, p + "self_attn.k_norm.weight", c.dtype, {hd}, 1.f, 0.1f));
    }
    ts.push_back(random_tensor(rng, p + "self_attn.o_proj.weight", c.dtype, {h, q_dim}, 0.f, out_proj));
    if (c.o_bias) ts.push_back(random_tensor(rng, p + "self_attn.o_proj.bias", c.dtype, {h}, 0.f, 0.1f));
    ts.push_back(random_tensor(rng, p + "post_attention_layernorm.weight", c.dtype, {h}, 1.f, 0.1f));
    ts.push_back(random_tensor(rng, p + "mlp.gate_proj.weight", c.dtype, {c.intermediate, h}, 0.f, proj));
    ts.push_back(random_tensor(rng, p + "mlp.up_proj.weight", c.dtype, {c.intermediate, h}, 0.f, proj));
    ts.push_back(random_tensor(rng, p + "mlp.down_proj.weight", c.dtype, {h, c.intermediate}, 0.f, down));
  }
  ts.push_back(random_tensor(rng, "model.norm.weight", c.dtype, {h}, 1.f, 0.1f));
  if (!c.tie_embeddings) {
    ts.push_back(random_tensor(rng, "lm_head.weight", c.dtype, {c.vocab, h}, 0.f, 4.f / std::sqrt(float(h))));
  }

  const std::filesystem::path dir(out_dir);
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (spec.shards == 1) {
    FREEKV_RETURN_IF_ERROR(write_safetensors((dir / "model.safetensors").string(), ts, meta));
  } else {
    nlohmann::json index;
    index["metadata"] = nlohmann::json::object();
    for (int s = 0; s < spec.shards; ++s) {
      const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, spec.shards);
      std::vector<TensorToWrite> part;
      for (size_t i = size_t(s); i < ts.size(); i += size_t(spec.shards)) {
        index["weight_map"][ts[i].name] = file;
        part.push_back(std::move(ts[i]));
      }
      FREEKV_RETURN_IF_ERROR(write_safetensors((dir / file).string(), part, meta));
    }
    FREEKV_RETURN_IF_ERROR(write_file((dir / "model.safetensors.index.json").string(), index.dump(2)));
  }
  FREEKV_RETURN_IF_ERROR(write_file((dir / "config.json").string(), model_config_to_json(c)));
  FREEKV_RETURN_IF_ERROR(write_file((dir / "tokenizer.json").string(), spec.tokenizer_json));
  nlohmann::json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"model_max_length", c.max_positions}};
  if (!bos_text.empty()) tc["bos_token"] = bos_text;
  if (!eos_text.empty()) tc["eos_token"] = eos_text;
  if (!spec.chat_template.empty()) tc["chat_template"] = spec.chat_template;
  FREEKV_RETURN_IF_ERROR(write_file((dir / "tokenizer_config.json").string(), tc.dump(2)));
  nlohmann::json gc = {{"do_sample", false}};
  if (bos >= 0) gc["bos_token_id"] = bos;
  if (eos >= 0) gc["eos_token_id"] = eos;
  return write_file((dir / "generation_config.json").string(), gc.dump(2));
}

}  // namespace freekv
