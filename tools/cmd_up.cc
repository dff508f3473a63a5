// `freekv up`: the whole service split on this machine — freekv-kvstore, freekv-coordinator and one
// freekv-worker as child processes on loopback — until Ctrl-C or SIGTERM, which stops them in order
// (coordinator, worker, kvstore) and removes the pool. If a child dies on its own, `up` prints the end
// of its log and stops the others.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "common/grpc_util.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/kvstore_block.h"
#include "tools/service_stack.h"

namespace freekv {

int cmd_up(int argc, char** argv) {
  const char* home = std::getenv("HOME");
  std::string model = FREEKV_DEFAULT_MODEL_DIR, listen = "127.0.0.1:50051",
              token_file = std::string(home ? home : "/root") + "/.freekv/admin-token", run_dir, pool_size = "2GiB",
              block_size = "auto", policy = "freekv", http_listen = "127.0.0.1:0", api_keys_file, tls_cert_file,
              tls_key_file, tls_ca_file;
  int64_t budget = 2048, sink = 512, recent = 512, max_batch = 8, threads = 0, metrics_port = 0;
  std::vector<std::string> worker_args;
  ArgParser p("freekv up [--model DIR] [--listen ADDR] [--admin-token-file F] [options]",
              "Starts freekv-kvstore, freekv-coordinator and a freekv-worker on this machine (loopback), prints where they\n"
              "listen, and stops them all on Ctrl-C or SIGTERM.");
  p.add_string("model", &model, "Hugging Face model directory the worker serves (default: the build's default model)");
  p.add_string("listen", &listen, "coordinator address for clients (public Generation and Admin APIs)");
  p.add_string("http-listen", &http_listen,
               "the coordinator's OpenAI-compatible HTTP API, host:port (port 0 picks a free one; empty = none)");
  p.add_string("api-keys-file", &api_keys_file, "bearer API keys the HTTP API requires, one per line (default: none)");
  p.add_string("tls-cert-file", &tls_cert_file,
               "PEM certificate: the coordinator's gRPC API and HTTP API serve TLS with it (and --tls-key-file)");
  p.add_string("tls-key-file", &tls_key_file, "PEM private key of --tls-cert-file (mode 0600 or 0640)");
  p.add_string("tls-ca-file", &tls_ca_file,
               "PEM certificates the workers and the printed commands verify the coordinator with (default: "
               "--tls-cert-file itself, for a self-signed one)");
  p.add_string("admin-token-file", &token_file, "admin bearer token file; created (0600) with a random token when missing");
  p.add_string("run-dir", &run_dir, "directory for sockets and logs (default /tmp/freekv-up-<pid>)");
  p.add_string("pool-size", &pool_size, "kvstore pool size, with units");
  p.add_string("block-size", &block_size,
               "kvstore block size, with units (auto: one page of the model, 32 bf16 tokens, with its key statistics)");
  p.add_string("policy", &policy, "retrieval policy of the worker: full, streaming, quest, arkvale or freekv");
  p.add_int("budget", &budget, "tokens attended per KV head once the context outgrows it");
  p.add_int("sink", &sink, "first tokens always attended");
  p.add_int("recent", &recent, "last tokens always attended");
  p.add_int("max-batch", &max_batch, "sequences the worker steps together");
  p.add_int("threads", &threads, "worker compute threads (0 = one per hardware thread)");
  p.add_int("metrics-port", &metrics_port,
            "serve Prometheus /metrics on 127.0.0.1: the coordinator on this port, the kvstore on +1, the worker on +2 "
            "(0 = no metrics)");
  p.add_list("worker-arg", &worker_args, "extra freekv-worker flag, e.g. --worker-arg=--kv-memory=8GiB (repeatable)");
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;

  // Ctrl-C and SIGTERM are taken below with sigtimedwait; children unblock them before exec.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  StackOptions o;
  o.model = model;
  o.coordinator_listen = listen;
  o.http_listen = http_listen;
  o.tls_cert_file = tls_cert_file;
  o.tls_key_file = tls_key_file;
  o.tls_ca_file = tls_ca_file;  // ServiceStack defaults it to the certificate
  // HTTP clients name the model: its directory's name.
  const std::string model_name = std::filesystem::path(model).lexically_normal().filename().string();
  o.coordinator_flags = {"--served_model_name=" + (model_name.empty() ? std::string("freekv") : model_name)};
  if (!api_keys_file.empty()) o.coordinator_flags.push_back("--api_keys_file=" + api_keys_file);
  o.run_dir = run_dir.empty() ? absl::StrCat("/tmp/freekv-up-", getpid()) : run_dir;
  o.pool_name = absl::StrCat("freekv-up-", getpid());
  o.pool_size = pool_size;
  if (block_size == "auto") {
    auto block = kvstore_block_for_model(model, 32, DType::kBF16);
    if (!block.ok()) return report_error("up", block.status());
    block_size = *block;
  }
  o.block_size = block_size;
  o.admin_token_file = token_file;
  if (metrics_port < 0 || metrics_port > 65533) return report_error("up", absl::InvalidArgumentError("--metrics-port must be 0..65533"));
  o.metrics_port = int(metrics_port);
  o.worker_flags = {"--policy=" + policy, absl::StrCat("--budget=", budget), absl::StrCat("--sink=", sink),
                    absl::StrCat("--recent=", recent), absl::StrCat("--max_batch=", max_batch),
                    absl::StrCat("--threads=", threads)};
  o.worker_flags.insert(o.worker_flags.end(), worker_args.begin(), worker_args.end());
  const bool new_token = access(token_file.c_str(), F_OK) != 0;
  if (new_token) {
    std::error_code ec;
    const auto dir = std::filesystem::path(token_file).parent_path();
    if (!dir.empty() && !std::filesystem::exists(dir)) {
      std::filesystem::create_directories(dir, ec);
      chmod(dir.c_str(), 0700);
    }
  }
  std::fprintf(stderr, "freekv up: starting kvstore, coordinator and worker (logs in %s) ...\n", o.run_dir.c_str());
  auto stack = ServiceStack::start(o);
  if (!stack.ok()) return report_error("up", stack.status());
  const std::string& ca_file = (*stack)->options().tls_ca_file;
  const std::string tls_hint = ca_file.empty() ? "" : " --tls-ca-file " + ca_file;
  std::printf("freekv up: ready\n"
              "  coordinator  %s   (Generation + Admin APIs, health, reflection%s)\n%s"
              "  worker       %s   (policy %s, model %s)\n"
              "  kvstore      unix:%s   (pool /dev/shm/%s, %s in blocks of %s)\n"
              "  admin token  %s%s\n"
              "  logs         %s/*.log\n%s"
              "try:\n"
              "  freekv generate --coordinator %s%s --prompt \"The quick brown fox\" --max-tokens 32\n"
              "  freekv admin sessions --coordinator %s%s --token-file %s\n"
              "Ctrl-C stops everything.\n",
              (*stack)->coordinator_address().c_str(), o.tls_cert_file.empty() ? "" : "; TLS",
              (*stack)->http_address().empty()
                  ? ""
                  : absl::StrCat("  HTTP API     ", o.tls_cert_file.empty() ? "http" : "https", "://", (*stack)->http_address(),
                                 "/v1   (OpenAI-compatible: /v1/completions, /v1/chat/completions, /v1/models, /health; model '",
                                 o.coordinator_flags[0].substr(o.coordinator_flags[0].find('=') + 1), "')\n")
                        .c_str(),
              (*stack)->worker_addresses()[0].c_str(), policy.c_str(), model.c_str(),
              (*stack)->kvstore_socket().c_str(), (*stack)->pool_name().c_str(), pool_size.c_str(), block_size.c_str(),
              token_file.c_str(),
              new_token ? "  (created)" : "", o.run_dir.c_str(),
              metrics_port == 0 ? ""
                                : absl::StrFormat("  metrics      http://127.0.0.1:{%d,%d,%d}/metrics   (coordinator, kvstore, worker)\n",
                                                  metrics_port, metrics_port + 1, metrics_port + 2).c_str(),
              (*stack)->coordinator_address().c_str(), tls_hint.c_str(),
              (*stack)->coordinator_address().c_str(), tls_hint.c_str(), token_file.c_str());
  std::fflush(stdout);

  int rc = 0;
  while (true) {
    timespec poll = {0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&sigs, nullptr, &poll);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "\nfreekv up: stopping (coordinator, worker, kvstore) ...\n");
      break;
    }
    if (ChildProcess* dead = (*stack)->exited_child()) {
      std::fprintf(stderr, "freekv up: %s exited on its own; stopping the rest. The end of %s:\n%s\n", dead->name().c_str(),
                   dead->log_path().c_str(), dead->log_tail(3000).c_str());
      rc = 1;
      break;
    }
  }
  (*stack)->stop();
  std::fprintf(stderr, "freekv up: stopped; pool /dev/shm/%s removed\n", (*stack)->pool_name().c_str());
  if (rc == 0 && run_dir.empty()) {  // a clean stop leaves nothing behind; after a crash the logs stay
    std::error_code ec;
    std::filesystem::remove_all(o.run_dir, ec);
  } else if (rc != 0) {
    std::fprintf(stderr, "freekv up: logs kept in %s\n", o.run_dir.c_str());
  }
  return rc;
}

}  // namespace freekv
