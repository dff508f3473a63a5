// Where a step of the model runs. The engine and the scheduler drive every step through this
// interface: the CPU's ForwardPass (weights mapped from the checkpoint, KV in the sequences' own pages,
// retrieval policies, offload to the kvstore) or a device backend (worker/gpu: weights, KV and
// activations in GPU memory). What a step means (inputs, logits, per-input failures) is the same.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace freekv {

class Sequence;

struct StepInput {
  Sequence* seq;              // the sequence the tokens extend (position of tokens[0]: what it holds)
  const int32_t* tokens;      // [n_tokens] ids (< vocab, checked by the caller)
  int64_t n_tokens;
  bool all_logits;            // logits for every new token (true) or only the last one
};

class StepBackend {
 public:
  virtual ~StepBackend() = default;

  // Appends every input's tokens to its sequence's KV and writes logits: for each input in order,
  // n_tokens rows (all_logits) or one row, each [vocab] fp32, into *logits (resized). (*failed)[i] is
  // OK, or why input i dropped out of the step (its rows of *logits are then meaningless and none of
  // its tokens were committed); the others keep their tokens. A non-OK return means no input's KV was
  // written (the KV memory cannot hold the step's tokens, or the device failed).
  virtual absl::Status step(const std::vector<StepInput>& inputs, std::vector<float>* logits,
                            std::vector<absl::Status>* failed) = 0;

  // The sequence is going away: whatever the backend keeps for it (a device KV region) is freed. Its
  // address may be reused by a new sequence afterwards.
  virtual void release(const Sequence* seq) {}

  // Sequences the backend can hold at once (a device KV pool's regions); 0 = no limit of its own (the
  // CPU's pages are bounded by the KV memory instead). The scheduler seats no more than this.
  virtual int64_t max_sequences() const { return 0; }

  // Human-readable name of where steps run ("cpu", "cuda:0 (NVIDIA H200)").
  virtual std::string device() const = 0;
};

}  // namespace freekv
