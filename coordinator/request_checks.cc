#include "coordinator/request_checks.h"

#include <cmath>

#include "common/session_id.h"

namespace freekv {

absl::Status check_generate_request(const v1::GenerateRequest& r, const CoordinatorLimits& limits) {
  if (int64_t(r.prompt().size()) > limits.max_prompt_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("the prompt is ", r.prompt().size(), " bytes; this coordinator accepts at most ",
                                                     limits.max_prompt_bytes, " (--max-prompt-bytes); shorten it"));
  }
  if (int64_t(r.prompt_ids().ids_size()) > limits.max_prompt_ids) {
    return absl::ResourceExhaustedError(absl::StrCat("the prompt is ", r.prompt_ids().ids_size(), " token ids; at most ",
                                                     limits.max_prompt_ids, " are accepted; shorten it"));
  }
  if (r.has_chat()) {
    int64_t bytes = 0;
    for (const v1::ChatMessage& m : r.chat().messages()) bytes += int64_t(m.role().size() + m.content().size());
    if (bytes > limits.max_prompt_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("the conversation is ", bytes, " bytes; this coordinator accepts at most ",
                                                       limits.max_prompt_bytes, " (--max-prompt-bytes); shorten it"));
    }
    if (r.chat().messages_size() == 0) {
      return absl::InvalidArgumentError("chat.messages is empty; give at least one message");
    }
  }
  if (r.prompt_is_context() && !r.has_prompt_ids()) {
    return absl::InvalidArgumentError("prompt_is_context applies to prompt_ids only; send the context as token ids (a chat "
                                      "conversation is always the whole context)");
  }
  const bool empty = r.has_chat() ? false : r.has_prompt_ids() ? r.prompt_ids().ids_size() == 0 : r.prompt().empty();
  if (empty && r.session_id().empty()) {
    return absl::InvalidArgumentError("the prompt is empty; give prompt text, prompt_ids or chat messages");
  }
  if (!r.session_id().empty()) FREEKV_RETURN_IF_ERROR(validate_session_id(r.session_id()));
  // A chat may leave max_tokens 0: until the end of the assistant's turn or of the model's positions.
  if (r.max_tokens() < (r.has_chat() ? 0 : 1)) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 1", r.has_chat() ? " (or 0 for a chat)" : "",
                                                   ", got ", r.max_tokens()));
  }
  const v1::SamplingParams& s = r.sampling();
  if (!std::isfinite(s.temperature()) || s.temperature() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.temperature must be a finite number >= 0 (0 = greedy), got ", s.temperature()));
  }
  if (s.has_top_p() && !(s.top_p() > 0 && s.top_p() <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_p must be in (0, 1], got ", s.top_p()));
  }
  if (s.top_k() < 0) return absl::InvalidArgumentError(absl::StrCat("sampling.top_k must be >= 0 (0 = no limit), got ", s.top_k()));
  return absl::OkStatus();
}

}  // namespace freekv
