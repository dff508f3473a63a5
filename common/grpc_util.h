// gRPC glue shared by the services: absl::Status ⇄ grpc::Status (the codes are the same numbers,
// DESIGN §5), bearer-token checks, the token file, health probes, and a server builder with health
// checking and reflection switched on.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace freekv {

grpc::Status to_grpc(const absl::Status& s);
absl::Status from_grpc(const grpc::Status& s);
// The status with "what: " put in front of its message, code unchanged.
absl::Status annotate(const absl::Status& s, const std::string& what);

// Reads a bearer token from a file: surrounding whitespace is dropped; an empty file, or one that
// others may read (mode & 077), is refused with a message that says how to fix it.
absl::StatusOr<std::string> read_token_file(const std::string& path);
// Writes a fresh random token (32 bytes, hex) to `path`, created 0600; ALREADY_EXISTS if it exists.
absl::Status create_token_file(const std::string& path);

// Checks `authorization: Bearer <token>` of a call against `token`. No header: UNAUTHENTICATED;
// another token: PERMISSION_DENIED; `token` empty (no token configured): PERMISSION_DENIED naming
// `how_to_enable`. The comparison takes the same time whatever the token.
absl::Status check_bearer(const grpc::ServerContext& ctx, const std::string& token, const std::string& how_to_enable);
void add_bearer(grpc::ClientContext* ctx, const std::string& token);

// grpc.health.v1.Health/Check of the server's overall status: "SERVING", "NOT_SERVING",
// "SERVICE_UNKNOWN", or "UNREACHABLE: <why>". Uses a generic stub (Debian ships no health stubs).
std::string health_status(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout);

// Enables the default health service and server reflection for every server built afterwards.
void enable_health_and_reflection();

// Message sizes the services accept (a prompt is bounded more tightly by its own checks).
constexpr int kMaxMessageBytes = 16 << 20;

// A channel to `address` (host:port or unix:PATH) with the message size limits above.
std::shared_ptr<grpc::Channel> make_channel(const std::string& address);

// Deadline `ms` milliseconds from now.
inline std::chrono::system_clock::time_point deadline_in(int64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

}  // namespace freekv
