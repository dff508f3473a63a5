// One request in generation: its sequence, how far its prompt has been fed, its sampler, streaming
// detokenizer and stop filter. A step loop asks it for its next input (a prefill chunk, or the token
// it sampled last) and hands back that input's logits; Engine::generate() runs one request alone, a
// continuous-batching scheduler runs many through the same ForwardPass::step.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "worker/engine/forward.h"
#include "worker/engine/generate_types.h"
#include "worker/engine/sampler.h"
#include "worker/engine/sequence.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

class ActiveRequest {
 public:
  // request.prompt is everything still to feed (a resumed session's replay first).
  ActiveRequest(const ModelConfig& config, const Tokenizer& tokenizer, int64_t prefill_chunk, GenerateRequest request,
                std::unique_ptr<Sequence> seq, std::function<void(std::string_view)> on_text);

  // The next step's input for this request; valid until accept().
  StepInput next_input();
  // logits: the rows of the last next_input() — n_tokens rows when it asked for all logits, else one.
  void accept(const float* logits);
  bool finished() const { return finished_; }

  const GenerateRequest& request() const { return request_; }
  Sequence& sequence() { return *seq_; }
  std::unique_ptr<Sequence> take_sequence() { return std::move(seq_); }
  GenerateResult& result() { return out_; }
  // The request's kvstore session is its own (closed when it finishes) rather than a kept one.
  bool private_session = false;
  // Token ids its kvstore session held when the request started: what a failed turn goes back to.
  void set_session_tokens_before(int64_t stored_tokens) { session_tokens_before_ = stored_tokens; }
  int64_t session_tokens_before() const { return session_tokens_before_; }

 private:
  void emit(const std::string& piece);
  void sample(const float* row);

  const ModelConfig& config_;
  int64_t prefill_chunk_;
  GenerateRequest request_;
  std::unique_ptr<Sequence> seq_;
  std::function<void(std::string_view)> on_text_;
  Sampler sampler_;
  StreamingDetokenizer detok_;
  StopStringFilter stops_;
  GenerateResult out_;
  int64_t fed_ = 0;          // prompt tokens fed so far
  int64_t last_input_ = 0;   // tokens in the last next_input()
  bool last_all_logits_ = false;
  int32_t last_token_ = 0;   // the token fed in a decode step
  bool finished_ = false;
  int64_t session_tokens_before_ = 0;
  std::chrono::steady_clock::time_point start_, first_token_;
};

}  // namespace freekv
