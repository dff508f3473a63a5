#include "common/grpc_util.h"

#include "absl/strings/str_split.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <future>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/file_util.h"

namespace freekv {

grpc::Status to_grpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status from_grpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::Status annotate(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", std::string(s.message())));
}

absl::StatusOr<std::string> read_token_file(const std::string& path) {
  if (absl::Status s = check_secret_file_mode(path, "token file"); !s.ok()) {
    if (s.code() != absl::StatusCode::kNotFound) return s;
    return absl::NotFoundError(absl::StrCat(s.message(), "; create one (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > ",
                                            path, " && chmod 600 ", path, "`)"));
  }
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  if (token.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds more than one word; put one token in it"));
  }
  return token;
}

absl::Status create_token_file(const std::string& path) {
  unsigned char bytes[32];
  int rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (rnd < 0 || read(rnd, bytes, sizeof bytes) != ssize_t(sizeof bytes)) {
    if (rnd >= 0) close(rnd);
    return absl::InternalError("cannot read /dev/urandom for a token");
  }
  close(rnd);
  std::string hex;
  for (unsigned char b : bytes) hex += absl::StrFormat("%02x", b);
  hex += "\n";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat("token file ", path, " already exists"));
    return absl::PermissionDeniedError(absl::StrCat("cannot create token file ", path, ": ", strerror(errno)));
  }
  const bool ok = write(fd, hex.data(), hex.size()) == ssize_t(hex.size());
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write token file ", path));
  return absl::OkStatus();
}

absl::Status check_bearer(const grpc::ServerContext& ctx, const std::string& token, const std::string& how_to_enable) {
  if (token.empty()) return absl::PermissionDeniedError(how_to_enable);
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError("this call needs the metadata 'authorization: Bearer <token>' (the admin token file)");
  }
  const std::string value(it->second.data(), it->second.size());
  const std::string kPrefix = "Bearer ";
  if (!absl::StartsWith(value, kPrefix)) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
  }
  const std::string given = value.substr(kPrefix.size());
  // Constant time in the given token's contents: every byte is compared whatever differs first.
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= uint8_t(given[i] ^ token[i % token.size()]);
  if (diff != 0) return absl::PermissionDeniedError("wrong admin token; use the token file the coordinator was started with");
  return absl::OkStatus();
}

void add_bearer(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

absl::StatusOr<std::set<std::string>> read_api_keys(const std::string& path) {
  FREEKV_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::set<std::string> keys;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') keys.insert(std::string(line));
  }
  if (keys.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " holds no API key (one per line)"));
  return keys;
}

absl::Status check_api_key(const grpc::ServerContext& ctx, const std::set<std::string>& keys) {
  if (keys.empty()) return absl::OkStatus();
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  const std::string value = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  const std::string kPrefix = "Bearer ";
  if (absl::StartsWith(value, kPrefix)) {
    const std::string given = value.substr(kPrefix.size());
    // Every key is compared in full, whichever matches: the time does not tell how much of a key was right.
    bool found = false;
    for (const std::string& key : keys) {
      unsigned char diff = given.size() == key.size() ? 0 : 1;
      for (size_t i = 0; i < given.size(); ++i) diff |= uint8_t(given[i] ^ key[i % key.size()]);
      found |= diff == 0;
    }
    if (found) return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      "this API needs a key: send the metadata 'authorization: Bearer <key>' with one of the keys of the "
      "coordinator's --api-keys-file");
}

std::string health_status(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  // HealthCheckRequest{service: ""} encodes as zero bytes; the response's field 1 is the status.
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status s = done.get_future().get();
  if (!s.ok()) return "UNREACHABLE: " + s.error_message();
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  if (bytes.size() >= 2 && bytes[0] == 0x08) {
    switch (bytes[1]) {
      case 1: return "SERVING";
      case 2: return "NOT_SERVING";
      case 3: return "SERVICE_UNKNOWN";
    }
  }
  return "UNKNOWN";
}

absl::StatusOr<TcpServer> start_tcp_server(const std::string& listen, const std::vector<grpc::Service*>& services,
                                           const std::function<void(grpc::ServerBuilder&)>& configure,
                                           std::shared_ptr<grpc::ServerCredentials> credentials) {
  // Both are process-wide switches read by every builder from now on.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  TcpServer out;
  builder.AddListeningPort(listen, credentials != nullptr ? credentials : grpc::InsecureServerCredentials(), &out.port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (grpc::Service* s : services) builder.RegisterService(s);
  if (configure) configure(builder);
  out.server = builder.BuildAndStart();
  if (out.server == nullptr || out.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " (in use, or not host:port?)"));
  }
  return out;
}

std::string proto_to_json(const google::protobuf::Message& m, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = pretty;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::shared_ptr<grpc::Channel> make_channel(const std::string& address,
                                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Fail fast when a peer is gone instead of backing off for a long time before the next connect.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, credentials != nullptr ? credentials : grpc::InsecureChannelCredentials(), args);
}

}  // namespace freekv
