// The OpenAI-compatible HTTP front of the coordinator (--http-listen): POST /v1/completions and
// POST /v1/chat/completions (plain or server-sent events), GET /v1/models, GET /health. Each completion is one call of the coordinator's
// own Generation service over gRPC on its listen address, so routing, sessions, limits, cancellation
// and the RPC metrics are exactly the gRPC API's; openai_api.h translates the JSON. Built on
// cpp-httplib (Debian's libcpp-httplib-dev, built with OpenSSL): a small, well-kept HTTP/1.1 server with
// chunked responses for streaming, which is all this front needs (no HTTP/2); HTTPS with the
// coordinator's --tls-cert-file and --tls-key-file.
//
// A client that goes away mid-stream cancels its generation (the worker stops and frees its pages).
// Bearer API keys are optional: with a keys file, every /v1 call must carry one of them (401 otherwise);
// keys are never logged.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "grpcpp/channel.h"
#include "common/status.h"

namespace httplib {
class Server;
}

namespace freekv {

struct HttpFrontOptions {
  std::string listen = "127.0.0.1:8000";  // host:port (port 0 picks a free one)
  std::shared_ptr<grpc::Channel> generation_channel;  // to the coordinator's own Generation service
  std::string tls_cert_file, tls_key_file;  // PEM (common/tls.h checked them); empty: plain HTTP
  std::string served_model = "freekv";    // the model id /v1/models lists and requests must name
  std::set<std::string> api_keys;         // empty: no key needed
  size_t max_body_bytes = 4 << 20;        // larger request bodies: 413
  int threads = 16;                       // requests served at once (each holds one thread)
  MetricsRegistry* metrics = nullptr;     // freekv_coordinator_http_requests_total{path, code}; may be null
};

class HttpFront {
 public:
  // Binds and starts serving on its own threads; INVALID_ARGUMENT / UNAVAILABLE when the address cannot
  // be bound.
  static absl::StatusOr<std::unique_ptr<HttpFront>> start(const HttpFrontOptions& options);
  ~HttpFront();  // stop()
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  int port() const { return port_; }
  void stop();

 private:
  class Handlers;
  HttpFront();
  std::unique_ptr<Handlers> handlers_;  // before server_: destroyed after it
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};


}  // namespace freekv
