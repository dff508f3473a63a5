// gRPC glue shared by the services: absl::Status ⇄ grpc::Status (the codes are the same numbers,
// DESIGN §5), bearer-token checks, the token file, health probes, TCP servers with health checking
// and reflection switched on, and proto messages as JSON.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

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

// The public API's keys (--api-keys-file): one key per line, blank lines and lines starting with '#'
// skipped; INVALID_ARGUMENT when the file holds none.
absl::StatusOr<std::set<std::string>> read_api_keys(const std::string& path);
// With keys configured, a call must carry `authorization: Bearer <one of them>` (UNAUTHENTICATED
// otherwise, the key never repeated); with none, every call passes.
absl::Status check_api_key(const grpc::ServerContext& ctx, const std::set<std::string>& keys);

// grpc.health.v1.Health/Check of the server's overall status: "SERVING", "NOT_SERVING",
// "SERVICE_UNKNOWN", or "UNREACHABLE: <why>". Uses a generic stub (Debian ships no health stubs).
std::string health_status(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout);

// Message sizes the services accept (a prompt is bounded more tightly by its own checks).
constexpr int kMaxMessageBytes = 16 << 20;

// A TCP gRPC server of the services, started by start_tcp_server().
struct TcpServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (the one picked when `listen` asked for port 0)
};
// Serves `services` on host:port with health checking, reflection, the message size limit above and
// no SO_REUSEPORT (gRPC's default would let a second server bind a port already in use). `configure`
// may add to the builder (interceptors); `credentials` null serves plaintext (common/tls.h makes TLS
// ones). UNAVAILABLE when the address cannot be bound.
absl::StatusOr<TcpServer> start_tcp_server(const std::string& listen, const std::vector<grpc::Service*>& services,
                                           const std::function<void(grpc::ServerBuilder&)>& configure = nullptr,
                                           std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);

// The message as JSON with the proto field names and every field, defaults included; `pretty`
// indents it. No trailing newline.
std::string proto_to_json(const google::protobuf::Message& m, bool pretty);

// A channel to `address` (host:port or unix:PATH) with the message size limits above; `credentials`
// null is plaintext (common/tls.h's channel_credentials() makes TLS ones).
std::shared_ptr<grpc::Channel> make_channel(const std::string& address,
                                            std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// Deadline `ms` milliseconds from now.
inline std::chrono::system_clock::time_point deadline_in(int64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

}  // namespace freekv
