#include "common/metrics_server.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace freekv {
namespace {

constexpr size_t kMaxRequestHead = 8192;
constexpr int kClientTimeoutMs = 2000;

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client left or timed out (SO_SNDTIMEO): nothing more to do for it
    off += size_t(n);
  }
}

std::string response(const std::string& status, const std::string& content_type, const std::string& body,
                     bool with_body, const std::string& extra_headers = "") {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type, "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n", extra_headers, "\r\n", with_body ? body : "");
}

// Reads the request head (up to the blank line) within the client timeout; false on timeout, EOF or
// a head over kMaxRequestHead.
bool read_head(int fd, std::string* head) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kClientTimeoutMs);
  char buf[1024];
  while (head->find("\r\n\r\n") == std::string::npos && head->find("\n\n") == std::string::npos) {
    if (head->size() > kMaxRequestHead) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) return false;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    head->append(buf, size_t(n));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, MetricsRegistry* registry) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", listen, "' is not host:port (e.g. 0.0.0.0:9400)"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", listen, "': port '", port,
                                                   "' is not a number in 0..65535"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", listen, "': ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
      last_error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", last_error,
                                               " (another process on that port? pick another --metrics-listen)"));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsServer>(new MetricsServer(fd, bound_port, registry));
}

MetricsServer::MetricsServer(int listen_fd, int port, MetricsRegistry* registry)
    : listen_fd_(listen_fd), port_(port), registry_(registry) {
  PCHECK(pipe2(wake_, O_CLOEXEC) == 0) << "pipe2";
  thread_ = std::thread([this] { loop(); });
}

MetricsServer::~MetricsServer() {
  (void)!write(wake_[1], "x", 1);
  thread_.join();
  close(wake_[0]);
  close(wake_[1]);
  close(listen_fd_);
}

void MetricsServer::loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "metrics server: poll";
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up between poll and accept, or out of descriptors for now
    const timeval tv{kClientTimeoutMs / 1000, (kClientTimeoutMs % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    serve(fd);
    close(fd);
  }
}

void MetricsServer::serve(int fd) {
  std::string head;
  if (!read_head(fd, &head)) {
    if (head.size() > kMaxRequestHead) write_all(fd, response("431 Request Header Fields Too Large", "text/plain", "request head over 8 KiB\n", true));
    return;
  }
  // Request line: METHOD SP TARGET SP HTTP/x.y
  const std::string line = head.substr(0, head.find_first_of("\r\n"));
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
    write_all(fd, response("400 Bad Request", "text/plain", "malformed request line\n", true));
    return;
  }
  const std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  const bool with_body = method != "HEAD";
  if (method != "GET" && method != "HEAD") {
    write_all(fd, response("405 Method Not Allowed", "text/plain", "only GET and HEAD\n", true, "Allow: GET, HEAD\r\n"));
  } else if (target == "/metrics") {
    write_all(fd, response("200 OK", "text/plain; version=0.0.4; charset=utf-8", registry_->render(), with_body));
  } else if (target == "/") {
    write_all(fd, response("200 OK", "text/plain", "freekv metrics: GET /metrics (Prometheus text format)\n", with_body));
  } else {
    write_all(fd, response("404 Not Found", "text/plain", "not found: metrics are at /metrics\n", with_body));
  }
}

}  // namespace freekv
