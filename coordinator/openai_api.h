// The OpenAI-compatible API as data: the JSON of a POST /v1/completions or /v1/chat/completions request
// turned into a freekv.v1.GenerateRequest, and freekv's answers turned into OpenAI's JSON (a completion,
// a server-sent chunk, an error). No I/O: the HTTP front (http_front.h) moves the bytes, the
// coordinator's Generation service generates.
//
// Fields of both: model (must be the served model, or absent), max_tokens (default 16 for completions,
// as OpenAI's; for chat, max_completion_tokens or max_tokens, default: up to the model's positions),
// temperature, top_p, seed, stop (a string or a list), stream, stream_options.include_usage, n (1 only).
// Completions: prompt (a string; a list of one string; a list of token ids), echo (false only). Chat:
// messages ({role, content}, content a string or a list of {"type": "text", "text"} parts), rendered by
// the model's chat template on the worker. Others that change the result (logprobs, best_of > 1, suffix,
// logit_bias, presence/frequency penalties ≠ 0, tools, response_format) are refused with 400 naming
// them, never ignored. freekv's own extras live in one object, "freekv": {"session_id": "...",
// "ignore_eos": bool, "chat_template_kwargs": {...}}, which OpenAI clients leave out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "freekv/v1/generation.pb.h"

namespace freekv {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with its HTTP status.
struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // the request field at fault, or empty
  std::string code;   // e.g. "model_not_found", or empty
};

enum class ApiFlavor { kCompletion, kChat };

struct CompletionCall {
  ApiFlavor flavor = ApiFlavor::kCompletion;
  v1::GenerateRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
};

// Parses the request body of the flavor's endpoint; false with *error filled when it is malformed or asks
// for what freekv does not do. served_model: the id GET /v1/models lists.
bool parse_completion_request(ApiFlavor flavor, std::string_view body, const std::string& served_model,
                              CompletionCall* call, ApiError* error);

// A freekv status as an OpenAI error: INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404, FAILED_PRECONDITION 409, RESOURCE_EXHAUSTED 429, DEADLINE_EXCEEDED 504, UNAVAILABLE
// and the rest 503, with freekv's message.
ApiError api_error_from_status(const absl::Status& status);
std::string error_json(const ApiError& error);

// What a finished generation answers. usage: prompt_tokens (completions: this request's prompt, as
// tokenized, a session's earlier tokens not counted again; chat: the whole rendered conversation),
// completion_tokens, total_tokens.
struct CompletionOutcome {
  std::string text;
  std::string finish_reason;  // "length" | "stop"
  int64_t prompt_tokens = 0, completion_tokens = 0;
  std::string session_id;     // the freekv session, when the request named one
};

// The non-streaming response: {"id", "object": "text_completion" | "chat.completion", "created", "model",
// "choices": [{"text"} | {"message": {"role": "assistant", "content"}}, ...], "usage": {...}}.
std::string completion_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                            const CompletionOutcome& outcome);
// One server-sent chunk's JSON (without the "data: " framing): text, and finish_reason once it is known
// (empty before). A chat stream's first chunk (first = true) carries the assistant role in its delta.
std::string completion_chunk_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                                  const std::string& text, const std::string& finish_reason, bool first);
// The last chunk of a stream that asked for stream_options.include_usage: no choice, the usage.
std::string usage_chunk_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                             const CompletionOutcome& outcome);
// GET /v1/models.
std::string models_json(const std::string& model, int64_t created);

}  // namespace freekv
