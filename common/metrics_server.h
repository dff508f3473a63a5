// A minimal HTTP/1.1 server for Prometheus scrapes: GET (or HEAD) /metrics answers the registry's text
// exposition; / answers a pointer to /metrics; anything else is 404, other methods 405, garbage 400.
//
// gRPC cannot serve plain HTTP/1.1, and a scrape endpoint needs nothing more than this, so the server is
// one thread handling one connection at a time with Connection: close. A client gets 2 s to send its
// request head (at most 8 KiB) and to take the answer; a slow or silent client delays the next scrape by
// that much and never blocks the process's other work.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace freekv {

class MetricsServer {
 public:
  // Listens on host:port (a name, an IPv4 address or [IPv6]; port 0 picks a free one). The registry must
  // outlive the server.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> start(const std::string& listen, MetricsRegistry* registry);
  ~MetricsServer();  // stops accepting and joins the thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(int listen_fd, int port, MetricsRegistry* registry);
  void loop();
  void serve(int fd);

  int listen_fd_;
  int port_;
  int wake_[2] = {-1, -1};  // pipe written by the destructor to end loop()
  MetricsRegistry* registry_;
  std::thread thread_;
};

}  // namespace freekv
