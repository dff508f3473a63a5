// The CPU step backend (step_backend.h): one forward step of the model over a batch of sequences, each contributing any number of new
// tokens (a prefill chunk or a single decode token). Rows of all sequences go through the matrix
// products together, so a decode batch reads the weights once; attention runs per sequence over its
// own paged KV, after the new tokens' K/V have been written into it, over the pages its retrieval
// policy chooses (Sequence::attend), and offloads the pages the step completed (TieredKv::commit).
//
// A sequence whose attention or offload fails (a recall, the kvstore full) drops out of the step on
// its own: the others finish it and keep their tokens; nothing of the step is committed for it.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/thread_pool.h"
#include "worker/engine/sequence.h"
#include "worker/engine/step_backend.h"
#include "worker/engine/weights.h"

namespace freekv {

// Sees, and may replace, the post-RoPE queries of a decode row before attention: q[n_heads, head_dim]
// of `seq` at `layer`. A seam for measurement: `freekv bench` replaces them with synthetic query
// dynamics, `freekv eval --tasks dynamics` reads them; serving never sets one.
using QueryHook = std::function<void(const Sequence* seq, int64_t layer, float* q)>;

// Where a step's time goes, in seconds summed over the steps it watched: the layers' matrix products
// (q, k, v, o, gate, up, down), attention (writing the new K/V, the policy's plan, recall waits, the
// attention itself), the rest of the layers (norms, RoPE, SwiGLU, residual adds), and the logits
// (final norm and LM head). For measurement: `freekv bench` reports it; serving never sets one.
struct StepProfile {
  double projections = 0, attention = 0, norms_rope_elementwise = 0, logits = 0;
};

// The CPU backend.
class ForwardPass : public StepBackend {
 public:
  ForwardPass(const ModelWeights& weights, ThreadPool& pool) : w_(weights), pool_(pool) {}

  // StepBackend::step. Returns RESOURCE_EXHAUSTED, before any K/V is written, when the KV pool cannot
  // hold the new tokens (pages already reserved for earlier inputs stay with their sequences and serve
  // their next tokens).
  absl::Status step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                    std::vector<absl::Status>* failed) override;
  std::string device() const override { return "cpu"; }

  void set_query_hook(QueryHook fn) { query_hook_ = std::move(fn); }
  // Adds each later step's phase times to *profile (null: stop; the clock is read only while set).
  void set_profile(StepProfile* profile) { profile_ = profile; }

  // step() for callers that need every input to finish (benchmarks, tests): the step's error, else the
  // first input's.
  absl::Status step_all(const std::vector<StepInput>& inputs, std::vector<float>* logits);

 private:
  void attention_layer(const std::vector<StepInput>& inputs, int64_t layer, std::vector<absl::Status>* failed);

  const ModelWeights& w_;
  ThreadPool& pool_;
  QueryHook query_hook_;
  StepProfile* profile_ = nullptr;
  // Activations of the current step, reused across steps: [rows, dim] fp32.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, tmp_;
  std::vector<int32_t> positions_;
};

}  // namespace freekv
