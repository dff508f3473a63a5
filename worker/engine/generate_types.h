// What a generation request asks for and what it returns, shared by the engine, the step loop and
// the services.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/sampler.h"
#include "worker/kv/tiered_kv.h"
#include "worker/retrieval/config.h"

namespace freekv {

struct GenerateRequest {
  std::vector<int32_t> prompt;            // token ids, non-empty
  std::string session_id;                 // kvstore session to continue (created when missing) and keep;
                                          // empty = a private one, closed afterwards
  // The prompt is the session's whole context (a chat's rendered conversation), not a continuation: the
  // session keeps the longest prefix its stored tokens share with the prompt, drops the rest, and only
  // the prompt's tokens after that prefix are fed.
  bool prompt_is_context = false;
  std::vector<int32_t> forced_tokens;     // feed these instead of sampling (teacher forcing, for eval)
  int64_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence
  std::vector<int32_t> stop_ids;          // in addition to the model's end-of-sequence ids
  bool ignore_eos = false;                // run to max_tokens whatever is sampled
  bool keep_logits = false;               // fill GenerateResult::logits
  // This request's retrieval policy instead of the engine's (`freekv eval` compares policies on one
  // engine and one kvstore session). An offloading policy needs the engine to have a kvstore.
  std::optional<RetrievalConfig> retrieval;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t reused_tokens = 0;              // context already in the session's KV (not prefilled again)
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;             // whole prompt, up to and including the first token's logits
  double decode_seconds = 0;              // every later step
  RetrievalStats retrieval;               // summed over layers and steps
  std::vector<RetrievalStats> retrieval_per_layer;
  int64_t kv_peak_bytes = 0;              // most of the worker's KV memory the sequence held at once
  int64_t digest_bytes = 0;               // page digests kept for selection at the end (grow with the context)
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
