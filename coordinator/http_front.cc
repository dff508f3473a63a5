#include "coordinator/http_front.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "coordinator/openai_api.h"
#include "freekv/v1/generation.grpc.pb.h"

namespace freekv {
namespace {

constexpr char kJson[] = "application/json";

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string completion_id(ApiFlavor flavor) {
  static std::atomic<uint64_t> next{0};
  return absl::StrCat(flavor == ApiFlavor::kChat ? "chatcmpl-" : "cmpl-", unix_seconds(), "-", next.fetch_add(1));
}

void reply_error(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(error_json(e), kJson);
}

// What the stream of one Generate call gives: the text so far, and the final message's outcome.
struct Generation {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  CompletionOutcome outcome;
};

CompletionOutcome outcome_of(ApiFlavor flavor, const v1::GenerateDone& done, std::string text) {
  CompletionOutcome o;
  o.text = std::move(text);
  o.finish_reason = done.finish_reason();
  // A chat's prompt is the whole conversation, whether its tokens were prefilled or taken from the session.
  const v1::Usage& u = done.usage();
  o.prompt_tokens = flavor == ApiFlavor::kChat ? u.prompt_tokens() + u.reused_tokens() + u.replayed_tokens() : u.prompt_tokens();
  o.completion_tokens = done.usage().generated_tokens();
  o.session_id = done.session_id();
  return o;
}

}  // namespace

class HttpFront::Handlers {
 public:
  explicit Handlers(const HttpFrontOptions& o)
      : options_(o),
        stub_(v1::Generation::NewStub(o.generation_channel)) {}

  void install(httplib::Server& server) {
    server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", kJson);
    });
    server.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      if (authorized(req, res)) res.set_content(models_json(options_.served_model, started_), kJson);
    });
    server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (authorized(req, res)) complete(ApiFlavor::kCompletion, req, res);
    });
    server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (authorized(req, res)) complete(ApiFlavor::kChat, req, res);
    });
    // Counted once the response's status is final.
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      if (options_.metrics == nullptr) return;
      static const std::set<std::string> known = {"/health", "/v1/models", "/v1/completions", "/v1/chat/completions"};
      options_.metrics
          ->counter("freekv_coordinator_http_requests_total", "HTTP API requests by path and status code.",
                    {{"path", known.count(req.path) != 0 ? req.path : "other"}, {"code", std::to_string(res.status)}})
          .add();
    });
  }

 private:
  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (options_.api_keys.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0 && options_.api_keys.count(header.substr(prefix.size())) != 0) return true;
    ApiError e;
    e.http_status = 401;
    e.type = "authentication_error";
    e.message = "a valid API key is required: send it as 'Authorization: Bearer <key>'";
    reply_error(res, e);
    return false;
  }

  void complete(ApiFlavor flavor, const httplib::Request& req, httplib::Response& res) {
    CompletionCall call;
    ApiError error;
    if (!parse_completion_request(flavor, req.body, options_.served_model, &call, &error)) return reply_error(res, error);
    auto gen = std::make_shared<Generation>();
    // The gRPC API checks the same keys: pass on the one this request was let in with.
    if (!options_.api_keys.empty()) gen->context.AddMetadata("authorization", req.get_header_value("Authorization"));
    gen->reader = stub_->Generate(&gen->context, call.request);
    // The first message decides between an HTTP error and a response: nothing is sent before it.
    v1::GenerateResponse first;
    if (!gen->reader->Read(&first)) return reply_error(res, api_error_from_status(from_grpc(gen->reader->Finish())));
    const std::string id = completion_id(flavor), model = options_.served_model;
    const int64_t created = unix_seconds();
    if (!call.stream) {
      std::string text;
      v1::GenerateResponse msg = first;
      do {
        if (msg.has_chunk()) text += msg.chunk().text();
        if (msg.has_done()) gen->outcome = outcome_of(flavor, msg.done(), text);
      } while (gen->reader->Read(&msg));
      const absl::Status s = from_grpc(gen->reader->Finish());
      if (!s.ok()) return reply_error(res, api_error_from_status(s));
      res.set_content(completion_json(flavor, id, created, model, gen->outcome), kJson);
      return;
    }
    const bool include_usage = call.include_usage;
    auto pending = std::make_shared<v1::GenerateResponse>(first);
    res.set_chunked_content_provider(
        "text/event-stream",
        [flavor, gen, pending, id, created, model, include_usage](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& data) {
            const std::string event = "data: " + data + "\n\n";
            return sink.write(event.data(), event.size());
          };
          std::string text;
          v1::GenerateResponse msg = *pending;
          // A chat stream opens with the assistant's role, before any text.
          bool role_sent = flavor != ApiFlavor::kChat || send(completion_chunk_json(flavor, id, created, model, "", "", true));
          do {
            bool sent = role_sent;
            if (sent && msg.has_chunk() && !msg.chunk().text().empty()) {
              text += msg.chunk().text();
              sent = send(completion_chunk_json(flavor, id, created, model, msg.chunk().text(), "", false));
            }
            if (sent && msg.has_done()) {
              gen->outcome = outcome_of(flavor, msg.done(), text);
              sent = send(completion_chunk_json(flavor, id, created, model, "", msg.done().finish_reason(), false)) &&
                     (!include_usage || send(usage_chunk_json(flavor, id, created, model, gen->outcome)));
            }
            if (!sent) {  // the client went away: stop the generation
              gen->context.TryCancel();
              gen->reader->Finish();
              return false;
            }
          } while (gen->reader->Read(&msg));
          const absl::Status s = from_grpc(gen->reader->Finish());
          if (!s.ok()) send(error_json(api_error_from_status(s)));  // headers are gone: report in-band
          send("[DONE]");
          sink.done();
          return true;
        });
  }

  HttpFrontOptions options_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  const int64_t started_ = unix_seconds();
};

absl::StatusOr<std::unique_ptr<HttpFront>> HttpFront::start(const HttpFrontOptions& options) {
  const size_t colon = options.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen wants host:port (port 0 picks a free one), got '", options.listen, "'"));
  }
  const std::string host = options.listen.substr(0, colon);
  std::unique_ptr<HttpFront> front(new HttpFront());
  if (options.tls_cert_file.empty()) {
    front->server_ = std::make_unique<httplib::Server>();
  } else {
    auto tls = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(), options.tls_key_file.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("the HTTP API cannot use --tls-cert-file ", options.tls_cert_file,
                                                     " with --tls-key-file ", options.tls_key_file));
    }
    front->server_ = std::move(tls);
  }
  httplib::Server& server = *front->server_;
  server.set_payload_max_length(options.max_body_bytes);
  const int threads = std::max(1, options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  front->handlers_ = std::make_unique<Handlers>(options);
  front->handlers_->install(server);
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    ApiError e;
    e.http_status = res.status;
    e.type = res.status == 404 ? "not_found_error" : "invalid_request_error";
    e.message = res.status == 413 ? "the request body is too large" : res.status == 404 ? "no such endpoint" : "bad request";
    res.set_content(error_json(e), kJson);
  });
  front->port_ = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (front->port_ < 0) {
    return absl::UnavailableError(absl::StrCat("--http-listen ", options.listen, ": cannot bind (in use, or not a local address)"));
  }
  front->thread_ = std::thread([&server] { server.listen_after_bind(); });
  return front;
}

HttpFront::HttpFront() = default;
HttpFront::~HttpFront() { stop(); }

void HttpFront::stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace freekv
