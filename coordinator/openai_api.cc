#include "coordinator/openai_api.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/json_depth.h"
#include "nlohmann/json.hpp"

namespace freekv {
namespace {

using nlohmann::json;

bool fail(ApiError* error, const std::string& param, const std::string& message, int status = 400,
          const std::string& code = "") {
  error->http_status = status;
  error->type = status == 404 ? "not_found_error" : "invalid_request_error";
  error->param = param;
  error->message = message;
  error->code = code;
  return false;
}

// A number field within [lo, hi], when present and not null.
bool number_field(const json& body, const char* name, double lo, double hi, double* out, ApiError* error) {
  if (!body.contains(name) || body[name].is_null()) return true;
  if (!body[name].is_number()) return fail(error, name, absl::StrCat("'", name, "' must be a number"));
  const double v = body[name].get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return fail(error, name, absl::StrCat("'", name, "' must be in [", lo, ", ", hi, "], got ", v));
  }
  *out = v;
  return true;
}

json usage(const CompletionOutcome& o) {
  return {{"prompt_tokens", o.prompt_tokens},
          {"completion_tokens", o.completion_tokens},
          {"total_tokens", o.prompt_tokens + o.completion_tokens}};
}

}  // namespace

namespace {

// completions: prompt as text, one text in a list, or token ids.
bool parse_prompt(const json& body, v1::GenerateRequest* r, ApiError* error) {
  if (!body.contains("prompt")) return fail(error, "prompt", "'prompt' is required");
  const json& prompt = body["prompt"];
  if (prompt.is_string()) {
    r->set_prompt(prompt.get<std::string>());
  } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    r->set_prompt(prompt[0].get<std::string>());
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
    for (const json& id : prompt) {
      if (!id.is_number_integer()) return fail(error, "prompt", "a token-id prompt must hold integers only");
      r->mutable_prompt_ids()->add_ids(id.get<int32_t>());
    }
  } else {
    return fail(error, "prompt",
                "'prompt' must be a string, a list of one string, or a list of token ids (one prompt per request)");
  }
  if (body.contains("best_of") && !body["best_of"].is_null() && body["best_of"] != 1) {
    return fail(error, "best_of", "freekv generates one choice per request: 'best_of' must be 1");
  }
  if (body.contains("echo") && body["echo"] == true) return fail(error, "echo", "'echo' is not supported");
  return true;
}

// chat: messages with text content (a string, null for an assistant turn, or a list of text parts).
bool parse_messages(const json& body, v1::GenerateRequest* r, ApiError* error) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return fail(error, "messages", "'messages' must be a non-empty list of {\"role\", \"content\"}");
  }
  v1::Chat* chat = r->mutable_chat();
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    const json& m = body["messages"][i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return fail(error, where, absl::StrCat("'", where, "' must be an object with a string 'role'"));
    }
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(m["role"].get<std::string>());
    const json content = m.value("content", json(nullptr));
    if (content.is_string()) {
      out->set_content(content.get<std::string>());
    } else if (content.is_array()) {
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
          return fail(error, where + ".content",
                      "freekv's models read text only: content parts must be {\"type\": \"text\", \"text\": \"...\"}");
        }
        out->mutable_content()->append(part["text"].get<std::string>());
      }
    } else if (!content.is_null()) {
      return fail(error, where + ".content", absl::StrCat("'", where, ".content' must be a string or a list of text parts"));
    }
    for (const char* unsupported : {"tool_calls", "function_call"}) {
      if (m.contains(unsupported) && !m[unsupported].is_null()) {
        return fail(error, absl::StrCat(where, ".", unsupported), absl::StrCat("'", unsupported, "' is not supported by freekv"));
      }
    }
  }
  for (const char* unsupported : {"tools", "tool_choice", "functions", "function_call", "response_format", "top_logprobs"}) {
    if (body.contains(unsupported) && !body[unsupported].is_null()) {
      return fail(error, unsupported, absl::StrCat("'", unsupported, "' is not supported by freekv"));
    }
  }
  return true;
}

// A positive integer field, when present and not null.
bool token_count_field(const json& body, const char* name, int64_t* out, ApiError* error) {
  if (!body.contains(name) || body[name].is_null()) return true;
  if (!body[name].is_number_integer() || body[name].get<int64_t>() < 1) {
    return fail(error, name, absl::StrCat("'", name, "' must be an integer >= 1"));
  }
  *out = body[name].get<int64_t>();
  return true;
}

}  // namespace

// Far deeper than any request OpenAI's API defines, far shallower than what would exhaust a stack.
constexpr size_t kMaxBodyDepth = 64;

bool parse_completion_request(ApiFlavor flavor, std::string_view text, const std::string& served_model,
                              CompletionCall* call, ApiError* error) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return fail(error, "", "the request body must be a JSON object (Content-Type: application/json)");
  }
  if (json_nests_deeper_than(body, kMaxBodyDepth)) {
    return fail(error, "", absl::StrCat("the request body nests deeper than ", kMaxBodyDepth, " levels"));
  }
  *call = CompletionCall{};
  call->flavor = flavor;
  v1::GenerateRequest& r = call->request;
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) return fail(error, "model", "'model' must be a string");
    const std::string model = body["model"].get<std::string>();
    if (model != served_model) {
      return fail(error, "model",
                  absl::StrCat("the model '", model, "' is not served here; GET /v1/models lists '", served_model, "'"),
                  404, "model_not_found");
    }
  }
  const bool chat = flavor == ApiFlavor::kChat;
  if (!(chat ? parse_messages(body, &r, error) : parse_prompt(body, &r, error))) return false;
  // Chat without a limit runs to the end of the turn or of the model's positions (max_tokens 0).
  int64_t max_tokens = chat ? 0 : 16;
  if (!token_count_field(body, "max_tokens", &max_tokens, error)) return false;
  if (chat && !token_count_field(body, "max_completion_tokens", &max_tokens, error)) return false;
  r.set_max_tokens(int32_t(std::min<int64_t>(max_tokens, INT32_MAX)));
  double temperature = 1.0, top_p = 1.0;  // OpenAI's defaults
  if (!number_field(body, "temperature", 0, 2, &temperature, error)) return false;
  if (!number_field(body, "top_p", 0, 1, &top_p, error)) return false;
  if (top_p <= 0) return fail(error, "top_p", "'top_p' must be > 0");
  r.mutable_sampling()->set_temperature(temperature);
  r.mutable_sampling()->set_top_p(top_p);
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) return fail(error, "seed", "'seed' must be an integer");
    r.mutable_sampling()->set_seed(uint64_t(body["seed"].get<int64_t>()));
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      r.add_stop(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const json& s : stop) {
        if (!s.is_string()) return fail(error, "stop", "'stop' must be a string or a list of up to 4 strings");
        r.add_stop(s.get<std::string>());
      }
    } else {
      return fail(error, "stop", "'stop' must be a string or a list of up to 4 strings");
    }
  }
  if (body.contains("n") && !body["n"].is_null() && body["n"] != 1) {
    return fail(error, "n", "freekv generates one choice per request: 'n' must be 1");
  }
  for (const char* unsupported : {"logprobs", "suffix", "logit_bias"}) {
    if (body.contains(unsupported) && !body[unsupported].is_null() && body[unsupported] != false) {
      return fail(error, unsupported, absl::StrCat("'", unsupported, "' is not supported by freekv"));
    }
  }
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    if (body.contains(penalty) && !body[penalty].is_null() && body[penalty] != 0) {
      return fail(error, penalty, absl::StrCat("'", penalty, "' is not supported by freekv (only 0)"));
    }
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return fail(error, "stream", "'stream' must be a boolean");
    call->stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    call->include_usage = body["stream_options"].value("include_usage", false);
  }
  if (body.contains("freekv") && !body["freekv"].is_null()) {
    const json& extra = body["freekv"];
    if (!extra.is_object()) return fail(error, "freekv", "'freekv' must be an object");
    if (extra.contains("session_id")) {
      if (!extra["session_id"].is_string()) return fail(error, "freekv.session_id", "'freekv.session_id' must be a string");
      r.set_session_id(extra["session_id"].get<std::string>());
    }
    if (extra.contains("ignore_eos")) {
      if (!extra["ignore_eos"].is_boolean()) return fail(error, "freekv.ignore_eos", "'freekv.ignore_eos' must be a boolean");
      r.set_ignore_eos(extra["ignore_eos"].get<bool>());
    }
    if (extra.contains("chat_template_kwargs")) {
      if (!chat || !extra["chat_template_kwargs"].is_object()) {
        return fail(error, "freekv.chat_template_kwargs",
                    "'freekv.chat_template_kwargs' must be an object, and only on /v1/chat/completions");
      }
      r.mutable_chat()->set_template_variables_json(extra["chat_template_kwargs"].dump());
    }
  }
  return true;
}

ApiError api_error_from_status(const absl::Status& status) {
  ApiError e;
  e.message = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: e.http_status = 400; break;
    case absl::StatusCode::kUnauthenticated: e.http_status = 401; e.type = "authentication_error"; break;
    case absl::StatusCode::kPermissionDenied: e.http_status = 403; e.type = "permission_error"; break;
    case absl::StatusCode::kNotFound: e.http_status = 404; e.type = "not_found_error"; break;
    case absl::StatusCode::kFailedPrecondition: e.http_status = 409; e.type = "conflict_error"; break;
    case absl::StatusCode::kResourceExhausted: e.http_status = 429; e.type = "rate_limit_error"; break;
    case absl::StatusCode::kDeadlineExceeded: e.http_status = 504; e.type = "timeout_error"; break;
    default: e.http_status = 503; e.type = "server_error"; break;
  }
  e.code = absl::StatusCodeToString(status.code());
  return e;
}

std::string error_json(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}}.dump();
}

std::string completion_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                            const CompletionOutcome& o) {
  const bool chat = flavor == ApiFlavor::kChat;
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", o.finish_reason}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", o.text}};
  } else {
    choice["text"] = o.text;
  }
  json out = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created}, {"model", model},
              {"choices", json::array({choice})}, {"usage", usage(o)}};
  if (!o.session_id.empty()) out["freekv"] = {{"session_id", o.session_id}};
  return out.dump();
}

std::string completion_chunk_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                                  const std::string& text, const std::string& finish_reason, bool first) {
  const bool chat = flavor == ApiFlavor::kChat;
  json choice = {{"index", 0}, {"logprobs", nullptr},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  return json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
              {"model", model}, {"choices", json::array({choice})}}
      .dump();
}

std::string usage_chunk_json(ApiFlavor flavor, const std::string& id, int64_t created, const std::string& model,
                             const CompletionOutcome& o) {
  return json{{"id", id}, {"object", flavor == ApiFlavor::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", created}, {"model", model}, {"choices", json::array()}, {"usage", usage(o)}}
      .dump();
}

std::string models_json(const std::string& model, int64_t created) {
  return json{{"object", "list"},
              {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "freekv"}}})}}
      .dump();
}

}  // namespace freekv
