// freekv-coordinator: the public front (DESIGN §1). Serves the Generation API, the Admin API and the
// workers' registry on one address, with gRPC health checking and reflection.
//
//   freekv-coordinator --listen 127.0.0.1:50051 --admin-token-file ~/.freekv/admin-token
//
// SIGINT/SIGTERM drain it: new calls are UNAVAILABLE, running streams get --drain-grace-ms to finish and
// then end UNAVAILABLE. The coordinator keeps no state that matters across restarts: workers register
// again, sessions are found in their kvstores.
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "common/config_check.h"
#include "common/file_util.h"
#include "common/flag_util.h"
#include "common/grpc_util.h"
#include "common/service_metrics.h"
#include "common/units.h"
#include "coordinator/admin_service.h"
#include "coordinator/generation_service.h"
#include "common/tls.h"
#include "coordinator/http_front.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Where to serve the public APIs and the worker registry, host:port (port 0 picks a free one). Loopback by "
          "default; use 0.0.0.0:PORT to accept remote clients (the Generation API has no authentication).");
ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the bearer token of the Admin API (mode 0600, or 0640 for the service's group; one word). Workers must present it too when "
          "they register. Without it the Admin API is disabled and any local process may register a worker.");
ABSL_FLAG(int32_t, heartbeat_interval_ms, 1000,
          "How often workers heartbeat; a worker silent for three intervals is dead and its sessions move.");
ABSL_FLAG(std::string, max_prompt_bytes, "4MiB", "Largest prompt text accepted, with units (larger: RESOURCE_EXHAUSTED).");
ABSL_FLAG(int64_t, max_prompt_ids, 1 << 20, "Most prompt token ids accepted in one request.");
ABSL_FLAG(bool, check_config, false,
          "Do not serve: validate the flags and the admin token file, print what the coordinator would do and exit 0, "
          "or 1 listing every problem.");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here once serving (for scripts and tests).");
ABSL_FLAG(std::string, http_listen, "",
          "Serve the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health) on this host:port, e.g. "
          "127.0.0.1:8000 (port 0 picks a free one; 0.0.0.0:PORT accepts remote clients). Empty: no HTTP API.");
ABSL_FLAG(std::string, http_address_file, "", "Write the HTTP API's bound address here once serving.");
ABSL_FLAG(std::string, served_model_name, "freekv", "The model id the HTTP API lists and requests must name.");
ABSL_FLAG(std::string, api_keys_file, "",
          "File of bearer API keys for the public Generation API, over HTTP and gRPC alike, one per line (never "
          "logged). Empty: no key needed.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the public API: with --tls-key-file, the gRPC port and the HTTP API serve TLS only "
          "(clients verify it: freekv generate --tls-ca-file, curl --cacert). Empty: plaintext.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls-cert-file (mode 0600, or 0640 for the service's group; never logged).");
ABSL_FLAG(int32_t, http_threads, 16, "HTTP requests served at once (each stream holds one).");
ABSL_FLAG(int32_t, drain_grace_ms, 10000,
          "On SIGTERM, how long running Generate streams may take to finish before they end UNAVAILABLE.");

namespace freekv {
namespace {

int fail(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "freekv-coordinator: %s%s\n", what.c_str(), std::string(s.message()).c_str());
  return 1;
}

int check_config() {
  ConfigCheck c("freekv-coordinator");
  c.host_port("listen", absl::GetFlag(FLAGS_listen));
  c.readable_file("admin-token-file", absl::GetFlag(FLAGS_admin_token_file));
  c.size("max-prompt-bytes", absl::GetFlag(FLAGS_max_prompt_bytes));
  if (absl::GetFlag(FLAGS_max_prompt_ids) < 1) c.error("--max-prompt-ids must be >= 1");
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) < 10) c.error("--heartbeat-interval-ms must be >= 10");
  if (absl::GetFlag(FLAGS_drain_grace_ms) < 0) c.error("--drain-grace-ms must be >= 0");
  if (!absl::GetFlag(FLAGS_http_listen).empty()) c.host_port("http-listen", absl::GetFlag(FLAGS_http_listen));
  c.readable_file("api-keys-file", absl::GetFlag(FLAGS_api_keys_file));
  if (absl::GetFlag(FLAGS_http_threads) < 1) c.error("--http-threads must be >= 1");
  const bool tls = !absl::GetFlag(FLAGS_tls_cert_file).empty() || !absl::GetFlag(FLAGS_tls_key_file).empty();
  if (tls) {
    absl::Status s = read_tls_server_files(absl::GetFlag(FLAGS_tls_cert_file), absl::GetFlag(FLAGS_tls_key_file)).status();
    if (!s.ok()) c.error(std::string(s.message()));
  }
  check_metrics_listen(c);
  std::string summary;
  if (c.ok()) {
    summary = absl::StrCat("Would serve the Generation and Admin APIs and the worker registry on ",
                           absl::GetFlag(FLAGS_listen), tls ? " over TLS" : " in plaintext", " (admin API ",
                           absl::GetFlag(FLAGS_admin_token_file).empty() ? "disabled" : "enabled",
                           "), expecting worker heartbeats every ", absl::GetFlag(FLAGS_heartbeat_interval_ms), " ms; ",
                           absl::GetFlag(FLAGS_http_listen).empty()
                               ? "no HTTP API; "
                               : absl::StrCat("the OpenAI-compatible HTTP API on ", absl::GetFlag(FLAGS_http_listen), "; "),
                           metrics_listen_summary(), ".");
  }
  return c.finish(summary);
}

int run() {
  std::string token;
  if (!absl::GetFlag(FLAGS_admin_token_file).empty()) {
    auto t = read_token_file(absl::GetFlag(FLAGS_admin_token_file));
    if (!t.ok()) return fail("--admin-token-file: ", t.status());
    token = *t;
  }
  CoordinatorLimits limits;
  auto max_prompt = parse_size(absl::GetFlag(FLAGS_max_prompt_bytes));
  if (!max_prompt.ok()) return fail("--max-prompt-bytes: ", max_prompt.status());
  limits.max_prompt_bytes = int64_t(*max_prompt);
  limits.max_prompt_ids = absl::GetFlag(FLAGS_max_prompt_ids);
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) < 10) return fail("", absl::InvalidArgumentError("--heartbeat-interval-ms must be >= 10"));

  Registry registry(std::chrono::milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms)));
  SessionTable sessions;
  Cluster cluster(&registry, &sessions, token);
  MetricsRegistry metrics;
  CoordinatorMetrics coordinator_metrics(&metrics);
  coordinator_metrics.watch(&cluster);
  std::set<std::string> api_keys;
  if (!absl::GetFlag(FLAGS_api_keys_file).empty()) {
    auto keys = read_api_keys(absl::GetFlag(FLAGS_api_keys_file));
    if (!keys.ok()) return fail("--api-keys-file: ", keys.status());
    api_keys = std::move(*keys);
  }
  GenerationService generation(&cluster, limits, &coordinator_metrics, api_keys);
  AdminService admin(&cluster);
  RegistryService registry_service(&cluster);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  const std::string cert_file = absl::GetFlag(FLAGS_tls_cert_file), key_file = absl::GetFlag(FLAGS_tls_key_file);
  if (!cert_file.empty() || !key_file.empty()) {
    auto pem = read_tls_server_files(cert_file, key_file);
    if (!pem.ok()) return fail("", pem.status());
    credentials = tls_server_credentials(*pem);
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  auto tcp = start_tcp_server(listen, {&generation, &admin, &registry_service},
                              [&](grpc::ServerBuilder& b) { count_rpcs(&b, &metrics); }, credentials);
  if (!tcp.ok()) return fail("", tcp.status());
  std::unique_ptr<grpc::Server> server = std::move(tcp->server);
  const int port = tcp->port;
  auto metrics_server = serve_metrics("freekv-coordinator", &metrics);
  if (!metrics_server.ok()) return fail("", metrics_server.status());
  for (const char* name : {"freekv.v1.Generation", "freekv.v1.Admin", "freekv.v1.WorkerRegistry"}) {
    server->GetHealthCheckService()->SetServingStatus(name, true);
  }
  const std::string address = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  if (!absl::GetFlag(FLAGS_address_file).empty()) {
    if (absl::Status s = write_file(absl::GetFlag(FLAGS_address_file), address + "\n"); !s.ok()) return fail("", s);
  }
  std::fprintf(stderr, "freekv-coordinator: listening on %s%s (admin API %s)\n", address.c_str(),
               credentials != nullptr ? " over TLS" : "", token.empty() ? "disabled: no --admin-token-file" : "enabled");
  std::unique_ptr<HttpFront> http;
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    HttpFrontOptions ho;
    ho.listen = absl::GetFlag(FLAGS_http_listen);
    // The front calls the Generation service in process: no second connection, and no certificate to
    // check against an address.
    ho.generation_channel = server->InProcessChannel(grpc::ChannelArguments());
    ho.tls_cert_file = cert_file;
    ho.tls_key_file = key_file;
    ho.served_model = absl::GetFlag(FLAGS_served_model_name);
    ho.max_body_bytes = size_t(limits.max_prompt_bytes) + (64 << 10);  // the prompt and the JSON around it
    ho.threads = absl::GetFlag(FLAGS_http_threads);
    ho.metrics = &metrics;
    ho.api_keys = api_keys;
    auto front = HttpFront::start(ho);
    if (!front.ok()) return fail("", front.status());
    http = std::move(*front);
    const std::string http_address = absl::StrCat(ho.listen.substr(0, ho.listen.rfind(':')), ":", http->port());
    if (!absl::GetFlag(FLAGS_http_address_file).empty()) {
      if (absl::Status s = write_file(absl::GetFlag(FLAGS_http_address_file), http_address + "\n"); !s.ok()) return fail("", s);
    }
    std::fprintf(stderr, "freekv-coordinator: OpenAI-compatible HTTP API on %s://%s/v1 (model '%s'%s)\n",
                 credentials != nullptr ? "https" : "http", http_address.c_str(), ho.served_model.c_str(), ho.api_keys.empty() ? "" : ", API key required");
  }

  const int sig = wait_for_stop_signal();
  LOG(INFO) << "signal " << sig << ": draining";
  server->GetHealthCheckService()->SetServingStatus(false);
  // The HTTP front's streams are Generate calls: the drain ends them (after the grace), then the front
  // can stop without waiting on a generation.
  generation.drain(std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_grace_ms)));
  if (http != nullptr) http->stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  metrics_server->reset();
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  freekv::block_stop_signals();
  freekv::parse_service_flags(
      argc, argv,
      "the freekv coordinator: the public Generation and Admin APIs (freekv.v1.Generation, freekv.v1.Admin), the\n"
      "workers' registry (freekv.v1.WorkerRegistry), grpc.health.v1.Health and reflection, on one address.\n\n"
      "  freekv-coordinator --listen 127.0.0.1:50051 --admin-token-file ~/.freekv/admin-token\n\n"
      "Flags may be written with dashes or underscores (--admin-token-file = --admin_token_file).",
      {"coordinator/main.cc", freekv::kMetricsFlagFile});
  if (absl::GetFlag(FLAGS_check_config)) return freekv::check_config();
  return freekv::run();
}
