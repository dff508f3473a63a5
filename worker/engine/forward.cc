#include "worker/engine/forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "kernels/cpu/primitives.h"
#include "kernels/ops.h"

namespace freekv {
namespace {

// Adds the time from construction to destruction to *into, when profiling (into non-null).
class PhaseTimer {
 public:
  explicit PhaseTimer(double* into) : into_(into) {
    if (into_ != nullptr) t0_ = std::chrono::steady_clock::now();
  }
  ~PhaseTimer() {
    if (into_ != nullptr) *into_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  double* into_;
  std::chrono::steady_clock::time_point t0_;
};

// Runs fn(begin, end) over the rows of a step's elementwise work (norms, RoPE, SwiGLU, residual adds):
// a prefill chunk's rows spread over the pool, as its matrix products are; decode's few rows stay on the
// calling thread, where a hand-off would cost more than the work.
constexpr int64_t kParallelRows = 32;

void for_rows(ThreadPool& pool, int64_t rows, const std::function<void(int64_t, int64_t)>& fn) {
  if (rows < kParallelRows) {
    fn(0, rows);
    return;
  }
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int) { fn(b, e); }, kParallelRows / 2);
}

}  // namespace

absl::Status ForwardPass::step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                               std::vector<absl::Status>* failed) {
  const ModelConfig& c = w_.config;
  const int64_t h = c.hidden, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd,
                kv_dim = int64_t(c.n_kv_heads) * hd, inter = c.intermediate;
  int64_t rows = 0;
  for (const StepInput& in : inputs) rows += in.n_tokens;

  // Reserve every sequence's pages first, so a full pool fails the step before any KV is written.
  for (size_t i = 0; i < inputs.size(); ++i) {
    absl::Status s = inputs[i].seq->kv().reserve(inputs[i].n_tokens);
    if (!s.ok()) return s;
  }
  failed->assign(inputs.size(), absl::OkStatus());

  x_.resize(size_t(rows * h));
  xn_.resize(size_t(rows * h));
  q_.resize(size_t(rows * q_dim));
  k_.resize(size_t(rows * kv_dim));
  v_.resize(size_t(rows * kv_dim));
  attn_.resize(size_t(rows * q_dim));
  gate_.resize(size_t(rows * inter));
  up_.resize(size_t(rows * inter));
  positions_.resize(size_t(rows));
  {
    int64_t r = 0;
    for (const StepInput& in : inputs) {
      embedding(w_.embed.data, w_.embed.dtype, in.tokens, in.n_tokens, h, x_.data() + r * h);
      for (int64_t t = 0; t < in.n_tokens; ++t) positions_[size_t(r + t)] = int32_t(in.seq->n_tokens() + t);
      r += in.n_tokens;
    }
  }

  const float eps = float(c.rms_eps);
  // Phase accumulators when profiling (null pointers otherwise: no clock reads).
  double* t_proj = profile_ != nullptr ? &profile_->projections : nullptr;
  double* t_attn = profile_ != nullptr ? &profile_->attention : nullptr;
  double* t_rest = profile_ != nullptr ? &profile_->norms_rope_elementwise : nullptr;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    {
      PhaseTimer t(t_rest);
      for_rows(pool_, rows, [&](int64_t b, int64_t e) {
        rmsnorm(x_.data() + b * h, L.attn_norm.data, L.attn_norm.dtype, eps, xn_.data() + b * h, e - b, h);
      });
    }
    {
      PhaseTimer t(t_proj);
      const MatmulOutput qkv[] = {{L.wq.data, L.wq.dtype, L.bq.empty() ? nullptr : L.bq.data(), q_.data(), q_dim},
                                  {L.wk.data, L.wk.dtype, L.bk.empty() ? nullptr : L.bk.data(), k_.data(), kv_dim},
                                  {L.wv.data, L.wv.dtype, L.bv.empty() ? nullptr : L.bv.data(), v_.data(), kv_dim}};
      matmul_shared_input(xn_.data(), rows, h, qkv, pool_);
    }
    {
      PhaseTimer t(t_rest);
      for_rows(pool_, rows, [&](int64_t b, int64_t e) {
        float* q = q_.data() + b * c.n_heads * hd;
        float* k = k_.data() + b * c.n_kv_heads * hd;
        if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector, before RoPE
          rmsnorm(q, L.q_norm.data, L.q_norm.dtype, eps, q, (e - b) * c.n_heads, hd);
          rmsnorm(k, L.k_norm.data, L.k_norm.dtype, eps, k, (e - b) * c.n_kv_heads, hd);
        }
        rope_apply(q, positions_.data() + b, w_.rope_inv_freq.data(), e - b, c.n_heads, hd);
        rope_apply(k, positions_.data() + b, w_.rope_inv_freq.data(), e - b, c.n_kv_heads, hd);
      });
    }
    {
      PhaseTimer t(t_attn);
      attention_layer(inputs, l, failed);
    }
    {
      PhaseTimer t(t_proj);
      matmul(attn_.data(), L.wo.data, L.wo.dtype, L.bo.empty() ? nullptr : L.bo.data(), xn_.data(), rows, q_dim, h, pool_);
    }
    {
      PhaseTimer t(t_rest);
      for_rows(pool_, rows, [&](int64_t b, int64_t e) {
        add_inplace(x_.data() + b * h, xn_.data() + b * h, (e - b) * h);
        rmsnorm(x_.data() + b * h, L.mlp_norm.data, L.mlp_norm.dtype, eps, xn_.data() + b * h, e - b, h);
      });
    }
    {
      PhaseTimer t(t_proj);
      const MatmulOutput gate_up[] = {{L.w_gate.data, L.w_gate.dtype, nullptr, gate_.data(), inter},
                                      {L.w_up.data, L.w_up.dtype, nullptr, up_.data(), inter}};
      matmul_shared_input(xn_.data(), rows, h, gate_up, pool_);
    }
    {
      PhaseTimer t(t_rest);
      for_rows(pool_, rows, [&](int64_t b, int64_t e) {
        swiglu(gate_.data() + b * inter, up_.data() + b * inter, gate_.data() + b * inter, (e - b) * inter);
      });
    }
    {
      PhaseTimer t(t_proj);
      matmul(gate_.data(), L.w_down.data, L.w_down.dtype, nullptr, xn_.data(), rows, inter, h, pool_);
    }
    PhaseTimer t(t_rest);
    for_rows(pool_, rows, [&](int64_t b, int64_t e) { add_inplace(x_.data() + b * h, xn_.data() + b * h, (e - b) * h); });
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if ((*failed)[i].ok()) (*failed)[i] = inputs[i].seq->kv().commit(inputs[i].tokens, inputs[i].n_tokens);
  }

  // Logits only for the rows asked for: the vocabulary product is the largest one of the step.
  int64_t out_rows = 0;
  tmp_.clear();
  {
    int64_t r = 0;
    for (const StepInput& in : inputs) {
      const int64_t first = in.all_logits ? r : r + in.n_tokens - 1;
      const int64_t n = in.all_logits ? in.n_tokens : 1;
      tmp_.insert(tmp_.end(), x_.begin() + first * h, x_.begin() + (first + n) * h);
      out_rows += n;
      r += in.n_tokens;
    }
  }
  PhaseTimer t(profile_ != nullptr ? &profile_->logits : nullptr);
  rmsnorm(tmp_.data(), w_.final_norm.data, w_.final_norm.dtype, eps, tmp_.data(), out_rows, h);
  logits->resize(size_t(out_rows * c.vocab));
  matmul(tmp_.data(), w_.lm_head.data, w_.lm_head.dtype, nullptr, logits->data(), out_rows, h, c.vocab, pool_);
  return absl::OkStatus();
}

absl::Status ForwardPass::step_all(const std::vector<StepInput>& inputs, std::vector<float>* logits) {
  std::vector<absl::Status> failed;
  FREEKV_RETURN_IF_ERROR(step(inputs, logits, &failed));
  for (const absl::Status& s : failed) FREEKV_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

// Writes the new tokens' K/V into each sequence's pages, then attends each sequence's queries over
// what its retrieval policy chose (causal within the new tokens). A sequence that fails here drops
// out: its attention rows are zeroed and it takes no further part in the step.
void ForwardPass::attention_layer(const std::vector<StepInput>& inputs, int64_t layer, std::vector<absl::Status>* failed) {
  const ModelConfig& c = w_.config;
  const int64_t hd = c.head_dim, n_kv = c.n_kv_heads, q_dim = int64_t(c.n_heads) * hd;
  const CpuPrimitives& prim = cpu_primitives();
  const float scale = 1.f / std::sqrt(float(hd));
  int64_t r = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const StepInput& in = inputs[i];
    float* out = attn_.data() + r * q_dim;
    float* q = q_.data() + r * q_dim;
    if (!(*failed)[i].ok()) {
      std::fill(out, out + in.n_tokens * q_dim, 0.f);
      r += in.n_tokens;
      continue;
    }
    TieredKv& kv = in.seq->kv();
    const int64_t pos0 = kv.n_tokens();
    const DType kv_dtype = kv.geometry().dtype;
    for (int64_t t = 0; t < in.n_tokens; ++t) {
      for (int64_t head = 0; head < n_kv; ++head) {
        const float* krow = k_.data() + ((r + t) * n_kv + head) * hd;
        const float* vrow = v_.data() + ((r + t) * n_kv + head) * hd;
        prim.from_f32(krow, kv_dtype, kv.k_row(layer, head, pos0 + t), hd);
        prim.from_f32(vrow, kv_dtype, kv.v_row(layer, head, pos0 + t), hd);
      }
    }
    if (query_hook_ && in.n_tokens == 1) query_hook_(in.seq, layer, q);
    absl::StatusOr<LayerPlan> plan = in.seq->attend(layer, q, in.n_tokens, scale, out, pool_);
    if (!plan.ok()) {
      (*failed)[i] = plan.status();
      std::fill(out, out + in.n_tokens * q_dim, 0.f);
    }
    r += in.n_tokens;
  }
}

}  // namespace freekv
