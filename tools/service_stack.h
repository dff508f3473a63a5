// Child processes of the service split, for `freekv up`, the services tests and the serving benchmark:
// a kvstore, a coordinator and workers started from the binaries next to this one, each logging to a
// file in a run directory, stopped in order (coordinator, workers, kvstore) and cleaned up (the pool
// segment in /dev/shm and the sockets).
//
// Children run in their own process group, so a terminal's Ctrl-C reaches only the parent, which then
// stops them in order; and they get SIGTERM if the parent dies (PR_SET_PDEATHSIG), so none outlives it.
// Linux sends that signal when the *thread* that started the child ends: start children from a thread
// that lives as long as they should.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "grpcpp/security/credentials.h"

namespace freekv {

class ChildProcess {
 public:
  // args[0] is the binary's path; stdout and stderr go to log_path (appended).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>& args, const std::string& log_path);
  ~ChildProcess();  // stop(5 s)

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::string& log_path() const { return log_; }
  // False once it exited (reaped here); *status then holds its wait status.
  bool running(int* status = nullptr);
  void signal(int sig);
  // SIGTERM, then SIGKILL after `grace`; reaps it. Safe to call twice.
  void stop(std::chrono::milliseconds grace);
  // The last `bytes` of its log.
  std::string log_tail(size_t bytes) const;

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  std::string name_, log_;
};

// The directory of the running binary (where freekv-kvstore, -worker and -coordinator are built).
std::string binary_dir();

// Waits until `path` exists and holds a line; returns it (without the newline).
absl::StatusOr<std::string> wait_for_file_line(const std::string& path, ChildProcess* child, std::chrono::milliseconds timeout);
// Waits until the server at `address` reports SERVING on grpc.health.v1.Health.
absl::Status wait_for_serving(const std::string& address, ChildProcess* child, std::chrono::milliseconds timeout,
                              std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

struct StackOptions {
  std::string bin_dir;                    // default: binary_dir()
  std::string run_dir;                    // sockets, address files, logs; created (0700)
  std::string model;                      // model directory for the workers
  std::string coordinator_listen = "127.0.0.1:0";
  std::string admin_token_file;           // created (0600) when missing
  std::string pool_name;                  // default: derived from run_dir's name
  std::string pool_size = "1GiB", block_size = "144KiB";
  std::vector<std::string> worker_flags;  // extra freekv-worker flags (--policy freekv, --threads 2, ...)
  std::vector<std::string> coordinator_flags;  // extra freekv-coordinator flags
  std::string http_listen;                // the coordinator's OpenAI-compatible HTTP API; empty = none
  // The coordinator serves TLS with this PEM pair (both or neither); its clients here and the workers
  // verify it with tls_ca_file (default: the certificate itself, for a self-signed one).
  std::string tls_cert_file, tls_key_file, tls_ca_file;
  int heartbeat_interval_ms = 500;
  // Prometheus /metrics on 127.0.0.1: the coordinator on this port, the kvstore on +1, worker n on +2+n.
  // 0 = none.
  int metrics_port = 0;
  std::chrono::milliseconds start_timeout{60000};
};

class ServiceStack {
 public:
  // Starts kvstore, coordinator and one worker; returns when the worker is registered and serving.
  static absl::StatusOr<std::unique_ptr<ServiceStack>> start(const StackOptions& options);
  ~ServiceStack();  // stop()

  // Starts another worker on the same kvstore; returns its index in workers(). Waits until it serves.
  absl::StatusOr<size_t> add_worker(const std::vector<std::string>& extra_flags = {});
  // Sends `sig` to the kvstore, reaps it and starts it again on the same pool and socket (the pool is
  // reattached: sessions and committed pages survive). Returns when it serves.
  absl::Status restart_kvstore(int sig);
  // Waits until the coordinator lists `n` workers in state "ready".
  absl::Status wait_for_ready_workers(int n, std::chrono::milliseconds timeout);

  const std::string& coordinator_address() const { return coordinator_address_; }
  // How to reach the coordinator: TLS with StackOptions::tls_ca_file, or plaintext.
  const std::shared_ptr<grpc::ChannelCredentials>& coordinator_credentials() const { return coordinator_credentials_; }
  const std::string& kvstore_socket() const { return kvstore_socket_; }
  const std::string& http_address() const { return http_address_; }  // host:port; empty without one
  const std::string& token_file() const { return options_.admin_token_file; }
  const std::string& pool_name() const { return options_.pool_name; }
  const StackOptions& options() const { return options_; }
  ChildProcess& kvstore() { return *kvstore_; }
  ChildProcess& coordinator() { return *coordinator_; }
  std::vector<std::unique_ptr<ChildProcess>>& workers() { return workers_; }
  std::vector<std::string>& worker_addresses() { return worker_addresses_; }

  // A child that exited on its own, or nullptr.
  ChildProcess* exited_child();
  // Stops coordinator, workers and kvstore (SIGTERM each, in that order) and removes the pool segment.
  void stop();

 private:
  ServiceStack() = default;
  absl::Status start_kvstore();
  StackOptions options_;
  std::string kvstore_socket_, coordinator_address_, http_address_;
  std::shared_ptr<grpc::ChannelCredentials> coordinator_credentials_;
  std::unique_ptr<ChildProcess> kvstore_, coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::vector<std::string> worker_addresses_;
  int next_worker_ = 0;
  bool stopped_ = false;
};

}  // namespace freekv
