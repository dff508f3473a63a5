// The single-process engine behind `freekv run`: a model, its tokenizer, a KV pool and threads, and
// the generation loop — chunked prefill of the prompt, then decode until max tokens, an end-of-
// sequence id, a stop id or a stop string.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "worker/engine/forward.h"
#include "worker/engine/sampler.h"
#include "worker/engine/weights.h"
#include "worker/kv/kv_cache.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct EngineOptions {
  int threads = 0;                        // 0 = one per hardware thread
  DType kv_dtype = DType::kBF16;          // storage of K/V pages
  int64_t page_tokens = 32;
  int64_t prefill_chunk = 512;            // prompt tokens per prefill step
  uint64_t kv_memory = 16ull << 30;       // bytes of KV pages across all sequences
};

struct GenerateRequest {
  std::vector<int32_t> prompt;            // token ids, non-empty
  int64_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence
  std::vector<int32_t> stop_ids;          // in addition to the model's end-of-sequence ids
  bool ignore_eos = false;                // run to max_tokens whatever is sampled
  bool keep_logits = false;               // fill GenerateResult::logits
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;             // whole prompt, up to and including the first token's logits
  double decode_seconds = 0;              // every later step
};

struct GenerateResult {
  std::vector<int32_t> tokens;            // generated ids (a final end-of-sequence or stop id included)
  std::string text;                       // their text, special tokens and the stop string excluded
  std::string finish_reason;              // "length" | "stop"
  GenerateStats stats;
  // With keep_logits: [prompt + generated, vocab]: one row per prompt position, then for each generated
  // token the row it was sampled from.
  std::vector<float> logits;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> load(const std::string& model_dir, const EngineOptions& options);

  // on_text receives text as it becomes final (complete UTF-8, never part of a stop string).
  absl::StatusOr<GenerateResult> generate(const GenerateRequest& request,
                                          const std::function<void(std::string_view)>& on_text);

  // INVALID_ARGUMENT naming the problem: empty prompt, ids outside the vocabulary, max_tokens < 1,
  // prompt + max_tokens beyond the model's positions, bad sampling values.
  absl::Status validate(const GenerateRequest& request) const;

  const ModelWeights& weights() const { return *weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  ThreadPool& threads() { return *threads_; }
  KvBlockPool& kv_pool() { return *kv_pool_; }
  ForwardPass& forward() { return *forward_; }
  const EngineOptions& options() const { return options_; }

 private:
  Engine() = default;
  EngineOptions options_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> threads_;
  std::unique_ptr<KvBlockPool> kv_pool_;
  std::unique_ptr<ForwardPass> forward_;
};

// Holds back generated text that might be the start of a stop string, and cuts at the first stop.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends complete text; returns what can be shown now. After a stop string is seen, stopped() is
  // true and nothing more is returned.
  std::string push(std::string_view text);
  // The held-back remainder at the end of generation (empty once stopped).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace freekv
