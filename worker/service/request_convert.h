// From the Generation API's messages to the engine's request and back. Everything a request can get
// wrong is checked here, against the model, before it reaches the scheduler: each failure is a
// status with the code DESIGN §5 gives it and a message that says what to change.
#pragma once

#include <cstdint>

#include "freekv/v1/generation.pb.h"
#include "worker/chat/chat_template.h"
#include "worker/engine/generate_types.h"
#include "worker/engine/scheduler.h"
#include "worker/model/config.h"
#include "worker/retrieval/config.h"
#include "worker/tokenizer/tokenizer.h"

namespace freekv {

struct RequestLimits {
  int64_t max_prompt_bytes = 4 << 20;  // text of one prompt
  int64_t max_stop_strings = 16;
  int64_t max_stop_bytes = 256;        // each stop string
};

// session_tokens: tokens the request's session holds already (0 for a new session or none). Special
// tokens (BOS) are added to text prompts only when the session is empty and raw_prompt is not set. A chat
// is rendered with chat_template into the session's whole context (GenerateRequest::prompt_is_context),
// its special tokens as the template writes them, and stops at the template's eos_token too.
absl::StatusOr<GenerateRequest> to_engine_request(const v1::GenerateRequest& in, const Tokenizer& tokenizer,
                                                  const ChatTemplate& chat_template, const ModelConfig& model,
                                                  int64_t session_tokens, const RequestLimits& limits);

v1::RetrievalStats to_proto(const RetrievalStats& stats, PolicyKind policy);

// The final message of a stream.
v1::GenerateDone make_done(const GenerateResult& result, const Job& job, PolicyKind policy, const std::string& worker_id);

}  // namespace freekv
