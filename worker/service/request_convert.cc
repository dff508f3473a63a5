#include "worker/service/request_convert.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace freekv {

namespace {

// The conversation as prompt ids, with the request's template variables.
absl::StatusOr<ChatPrompt> render_chat(const v1::Chat& chat, const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                       const RequestLimits& limits) {
  std::vector<ChatMessage> messages;
  int64_t bytes = 0;
  for (const v1::ChatMessage& m : chat.messages()) {
    bytes += int64_t(m.role().size() + m.content().size());
    messages.push_back({m.role(), m.content()});
  }
  if (bytes > limits.max_prompt_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("the conversation is ", bytes, " bytes; at most ", limits.max_prompt_bytes,
                                                     " are accepted; shorten it"));
  }
  nlohmann::json variables;
  if (!chat.template_variables_json().empty()) {
    variables = nlohmann::json::parse(chat.template_variables_json(), nullptr, /*allow_exceptions=*/false);
    if (variables.is_discarded() || !variables.is_object()) {
      return absl::InvalidArgumentError("chat.template_variables_json must be a JSON object, e.g. {\"enable_thinking\": false}");
    }
  }
  return chat_prompt(chat_template, tokenizer, messages, variables);
}

}  // namespace

absl::StatusOr<GenerateRequest> to_engine_request(const v1::GenerateRequest& in, const Tokenizer& tokenizer,
                                                  const ChatTemplate& chat_template, const ModelConfig& model,
                                                  int64_t session_tokens, const RequestLimits& limits) {
  GenerateRequest r;
  r.session_id = in.session_id();
  if (in.has_chat()) {
    FREEKV_ASSIGN_OR_RETURN(ChatPrompt chat, render_chat(in.chat(), chat_template, tokenizer, limits));
    r.prompt = std::move(chat.ids);
    // The conversation is the whole context: what the session holds already is reused, not added to.
    r.prompt_is_context = true;
    session_tokens = 0;
    if (chat.end_of_turn_id >= 0) r.stop_ids.push_back(chat.end_of_turn_id);
  } else if (in.has_prompt_ids()) {
    r.prompt.assign(in.prompt_ids().ids().begin(), in.prompt_ids().ids().end());
    if (in.prompt_is_context()) {
      // The ids are the whole context: what the session holds is reused, not added to.
      r.prompt_is_context = true;
      session_tokens = 0;
    }
  } else {
    if (int64_t(in.prompt().size()) > limits.max_prompt_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("the prompt is ", in.prompt().size(), " bytes; at most ",
                                                       limits.max_prompt_bytes, " are accepted; shorten it"));
    }
    if (!in.prompt().empty()) r.prompt = tokenizer.encode(in.prompt(), !in.raw_prompt() && session_tokens == 0);
  }
  if (r.prompt.empty() && (r.session_id.empty() || session_tokens == 0)) {
    return absl::InvalidArgumentError(r.session_id.empty()
        ? "the prompt is empty; give prompt text or prompt_ids"
        : absl::StrCat("the prompt is empty and session '", r.session_id,
                       "' holds no tokens to continue from; give prompt text or prompt_ids"));
  }
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= model.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside the model's vocabulary [0, ",
                                                     model.vocab, ")"));
    }
  }
  const int64_t context = session_tokens + int64_t(r.prompt.size());
  const int64_t limit = model.context_limit();
  if (context >= limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the prompt is ", r.prompt.size(), " tokens", session_tokens > 0 ? absl::StrCat(" on top of the session's ", session_tokens) : "",
        "; the model takes at most ", limit, " positions (", model.context_limit_source(), ") including the generated "
        "tokens; shorten the prompt", session_tokens > 0 ? " or start a new session" : ""));
  }
  // A chat without max_tokens (0) may run to the end of the model's positions.
  const int64_t max_tokens = in.has_chat() && in.max_tokens() == 0 ? limit - context : in.max_tokens();
  if (max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 1, got ", in.max_tokens()));
  }
  if (context + max_tokens > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens ", in.max_tokens(), " is beyond the model's limit: ", context, " tokens of context leave room for at most ",
        limit - context, " new tokens (", model.context_limit_source(), "); lower max_tokens"));
  }
  r.max_tokens = max_tokens;
  const v1::SamplingParams& sp = in.sampling();
  r.sampling.temperature = sp.temperature();
  r.sampling.top_k = sp.top_k();
  r.sampling.top_p = sp.has_top_p() ? sp.top_p() : 1.0;
  r.sampling.seed = sp.seed();
  FREEKV_RETURN_IF_ERROR(validate_sampling(r.sampling));
  if (in.stop_size() > limits.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat(in.stop_size(), " stop strings given; at most ", limits.max_stop_strings));
  }
  for (const std::string& s : in.stop()) {
    if (s.empty()) return absl::InvalidArgumentError("a stop string is empty; drop it");
    if (int64_t(s.size()) > limits.max_stop_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("a stop string is ", s.size(), " bytes; at most ", limits.max_stop_bytes));
    }
    r.stop_strings.push_back(s);
  }
  for (int32_t id : in.stop_ids()) {
    if (id < 0 || id >= model.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop id ", id, " is outside the model's vocabulary [0, ", model.vocab, ")"));
    }
    r.stop_ids.push_back(id);
  }
  r.ignore_eos = in.ignore_eos();
  return r;
}

v1::RetrievalStats to_proto(const RetrievalStats& s, PolicyKind policy) {
  v1::RetrievalStats p;
  p.set_policy(policy_name(policy));
  p.set_pages_recalled(s.pages_recalled);
  p.set_bytes_recalled(s.bytes_recalled);
  p.set_sync_recalls(s.sync_recalls);
  p.set_async_recalls(s.async_recalls);
  p.set_recall_wait_seconds(s.recall_wait_seconds);
  p.set_correction_checks(s.correction_checks);
  p.set_correction_triggers(s.correction_triggers);
  p.set_correction_rate(s.correction_checks > 0 ? double(s.correction_triggers) / double(s.correction_checks) : 0.0);
  p.set_selection_steps(s.selection_steps);
  return p;
}

v1::GenerateDone make_done(const GenerateResult& result, const Job& job, PolicyKind policy, const std::string& worker_id) {
  v1::GenerateDone d;
  d.set_finish_reason(result.finish_reason);
  d.set_worker_id(worker_id);
  d.set_session_id(job.request().session_id);
  v1::Usage* u = d.mutable_usage();
  const GenerateStats& st = result.stats;
  u->set_prompt_tokens(st.prompt_tokens);
  u->set_reused_tokens(st.reused_tokens);
  u->set_replayed_tokens(job.replayed_tokens());
  u->set_generated_tokens(st.generated_tokens);
  u->set_session_tokens(job.session_tokens());
  u->set_time_to_first_token_seconds(job.first_token_seconds());
  u->set_prefill_seconds(st.prefill_seconds);
  u->set_decode_seconds(st.decode_seconds);
  u->set_queue_seconds(job.queue_seconds());
  u->set_worker_kv_peak_bytes(st.kv_peak_bytes);
  u->set_digest_bytes(st.digest_bytes);
  *d.mutable_retrieval() = to_proto(st.retrieval, policy);
  return d;
}

}  // namespace freekv
