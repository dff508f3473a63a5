#include "worker/engine/weights.h"

#include <cmath>
#include <filesystem>

namespace freekv {
namespace {

class Loader {
 public:
  Loader(const TensorStore& store, ModelWeights* out) : store_(store), out_(out) {}

  absl::StatusOr<WeightRef> weight(const std::string& name, std::vector<int64_t> shape) {
    FREEKV_ASSIGN_OR_RETURN(const TensorView* t, store_.get(name, shape));
    FREEKV_ASSIGN_OR_RETURN(DType dt, weight_dtype(t->dtype));
    out_->weight_bytes += t->nbytes;
    return WeightRef{t->data, dt};
  }

  absl::StatusOr<std::vector<float>> bias(const std::string& name, int64_t n) {
    FREEKV_ASSIGN_OR_RETURN(WeightRef w, weight(name, {n}));
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = load_as_f32(w.data, w.dtype, size_t(i));
    return v;
  }

 private:
  const TensorStore& store_;
  ModelWeights* out_;
};

}  // namespace

std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const RopeScaling& rs = c.rope_scaling;
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
    if (rs.kind == RopeScalingKind::kLinear) {
      f /= rs.factor;
    } else if (rs.kind == RopeScalingKind::kLlama3) {
      // Long wavelengths are slowed by `factor`, short ones kept, and the band between blends the two.
      const double wavelen = 2 * M_PI / f;
      const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
      const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[size_t(i)] = float(f);
  }
  return inv;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> load_model_weights(const std::string& model_dir) {
  auto m = std::make_unique<ModelWeights>();
  m->dir = model_dir;
  const std::string config_path = (std::filesystem::path(model_dir) / "config.json").string();
  FREEKV_ASSIGN_OR_RETURN(m->config, load_model_config(config_path));
  FREEKV_ASSIGN_OR_RETURN(m->store, TensorStore::open_dir(model_dir));
  const ModelConfig& c = m->config;
  const int64_t h = c.hidden, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd,
                kv_dim = int64_t(c.n_kv_heads) * hd, inter = c.intermediate, vocab = c.vocab;
  Loader ld(*m->store, m.get());
  FREEKV_ASSIGN_OR_RETURN(m->embed, ld.weight("model.embed_tokens.weight", {vocab, h}));
  const size_t embed_bytes = size_t(vocab * h) * dtype_size(m->embed.dtype);
  m->weight_bytes -= embed_bytes;  // a step reads one embedding row per token, not the table
  FREEKV_ASSIGN_OR_RETURN(m->final_norm, ld.weight("model.norm.weight", {h}));
  if (m->store->find("lm_head.weight") != nullptr) {
    FREEKV_ASSIGN_OR_RETURN(m->lm_head, ld.weight("lm_head.weight", {vocab, h}));
  } else if (c.tie_embeddings) {
    m->lm_head = m->embed;
    m->weight_bytes += embed_bytes;  // the logits read the whole table
  } else {
    return absl::NotFoundError(absl::StrCat(
        model_dir, ": no tensor 'lm_head.weight' and tie_word_embeddings is false in config.json; "
                   "the checkpoint is incomplete"));
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LayerWeights L;
    FREEKV_ASSIGN_OR_RETURN(L.attn_norm, ld.weight(p + "input_layernorm.weight", {h}));
    FREEKV_ASSIGN_OR_RETURN(L.wq, ld.weight(p + "self_attn.q_proj.weight", {q_dim, h}));
    FREEKV_ASSIGN_OR_RETURN(L.wk, ld.weight(p + "self_attn.k_proj.weight", {kv_dim, h}));
    FREEKV_ASSIGN_OR_RETURN(L.wv, ld.weight(p + "self_attn.v_proj.weight", {kv_dim, h}));
    FREEKV_ASSIGN_OR_RETURN(L.wo, ld.weight(p + "self_attn.o_proj.weight", {h, q_dim}));
    if (c.qkv_bias) {
      FREEKV_ASSIGN_OR_RETURN(L.bq, ld.bias(p + "self_attn.q_proj.bias", q_dim));
      FREEKV_ASSIGN_OR_RETURN(L.bk, ld.bias(p + "self_attn.k_proj.bias", kv_dim));
      FREEKV_ASSIGN_OR_RETURN(L.bv, ld.bias(p + "self_attn.v_proj.bias", kv_dim));
    }
    if (c.o_bias) {
      FREEKV_ASSIGN_OR_RETURN(L.bo, ld.bias(p + "self_attn.o_proj.bias", h));
    }
    if (c.qk_norm) {
      FREEKV_ASSIGN_OR_RETURN(L.q_norm, ld.weight(p + "self_attn.q_norm.weight", {hd}));
      FREEKV_ASSIGN_OR_RETURN(L.k_norm, ld.weight(p + "self_attn.k_norm.weight", {hd}));
    }
    FREEKV_ASSIGN_OR_RETURN(L.mlp_norm, ld.weight(p + "post_attention_layernorm.weight", {h}));
    FREEKV_ASSIGN_OR_RETURN(L.w_gate, ld.weight(p + "mlp.gate_proj.weight", {inter, h}));
    FREEKV_ASSIGN_OR_RETURN(L.w_up, ld.weight(p + "mlp.up_proj.weight", {inter, h}));
    FREEKV_ASSIGN_OR_RETURN(L.w_down, ld.weight(p + "mlp.down_proj.weight", {h, inter}));
    m->layers.push_back(std::move(L));
  }
  m->rope_inv_freq = rope_inverse_frequencies(c);
  return m;
}

}  // namespace freekv
