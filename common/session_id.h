// Session ids of the Generation API: 1..64 characters of [A-Za-z0-9._-]. Ids starting with "private-"
// are reserved for the kvstore sessions of one-off requests (Engine::start_request), so a client can
// never name, and so touch, another request's KV.
#pragma once

#include <string>

#include "common/status.h"

namespace freekv {

inline constexpr size_t kMaxSessionIdBytes = 64;

inline absl::Status validate_session_id(const std::string& id) {
  if (id.empty() || id.size() > kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("session id must be 1..", kMaxSessionIdBytes, " characters, got ",
                                                   id.size()));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("session id '", id, "' may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  if (id.rfind("private-", 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("session id '", id, "' starts with 'private-', which is reserved; pick another"));
  }
  return absl::OkStatus();
}

}  // namespace freekv
