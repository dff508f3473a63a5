// Helpers shared by the kvstore unit and integration tests: deterministic page contents, unique names
// for segments and sockets, and child processes with timeouts.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace freekv::testing {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t hash_string(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The bytes of (session, layer, page): a function of those three only, so any process can check them.
inline void fill_page(const std::string& session, int layer, int64_t page, uint8_t* dst, uint64_t bytes) {
  uint64_t s = splitmix64(hash_string(session) ^ (uint64_t(layer) << 40) ^ uint64_t(page) * 0x100000001B3ull);
  uint64_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    s = splitmix64(s);
    std::memcpy(dst + i, &s, 8);
  }
  for (; i < bytes; ++i) dst[i] = uint8_t(splitmix64(s + i));
}

// Index of the first byte where `got` differs from the expected chunk of kv_head, or -1.
inline int64_t check_chunk(const std::string& session, int layer, int64_t page, uint32_t kv_head,
                           uint64_t chunk_bytes, uint64_t page_bytes, const uint8_t* got) {
  static thread_local std::vector<uint8_t> expect;
  expect.resize(page_bytes);
  fill_page(session, layer, page, expect.data(), page_bytes);
  const uint8_t* e = expect.data() + uint64_t(kv_head) * chunk_bytes;
  if (std::memcmp(e, got, chunk_bytes) == 0) return -1;
  for (uint64_t i = 0; i < chunk_bytes; ++i) {
    if (e[i] != got[i]) return int64_t(i);
  }
  return -1;
}

inline std::vector<int32_t> session_tokens(const std::string& session, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t(splitmix64(hash_string(session) + uint64_t(i)) % 150000);
  return t;
}

// "kvt-<pid>-<n>-<tag>": unique per process and call, valid as a /dev/shm name.
inline std::string unique_name(const std::string& tag) {
  static std::atomic<int> n{0};
  return "kvt-" + std::to_string(getpid()) + "-" + std::to_string(n++) + "-" + tag;
}

inline int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// True once something accepts connections on the unix socket `path` (within timeout_ms).
inline bool wait_for_socket(const std::string& path, int64_t timeout_ms) {
  const int64_t end = now_ms() + timeout_ms;
  while (now_ms() < end) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return true;
    usleep(10000);
  }
  return false;
}

// A child process running `argv`, with its stdout+stderr in a pipe.
struct Child {
  pid_t pid = -1;
  int out_fd = -1;  // read end of the child's stdout/stderr
  std::string output;

  static Child spawn(const std::vector<std::string>& argv) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return {};
    Child c;
    c.pid = fork();
    if (c.pid == 0) {
      dup2(p[1], 1);
      dup2(p[1], 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(p[1]);
    c.out_fd = p[0];
    fcntl(c.out_fd, F_SETFL, O_NONBLOCK);
    return c;
  }

  // Reads what is available into `output`.
  void drain() {
    char buf[4096];
    for (;;) {
      ssize_t n = read(out_fd, buf, sizeof(buf));
      if (n <= 0) break;
      output.append(buf, size_t(n));
    }
  }

  // True once `text` appeared in the output (within timeout_ms).
  bool wait_for_output(const std::string& text, int64_t timeout_ms) {
    const int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
      drain();
      if (output.find(text) != std::string::npos) return true;
      usleep(5000);
    }
    return false;
  }

  // Exit code (or 128 + signal); -1 when it did not end within timeout_ms (then it is killed).
  int wait(int64_t timeout_ms) {
    const int64_t end = now_ms() + timeout_ms;
    int status = 0;
    for (;;) {
      drain();
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (now_ms() > end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        drain();
        pid = -1;
        return -1;
      }
      usleep(5000);
    }
    drain();
    pid = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
  }

  void kill9() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      wait(5000);
    }
  }

  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out_fd >= 0) close(out_fd);
  }
  Child() = default;
  Child(Child&& o) noexcept : pid(o.pid), out_fd(o.out_fd), output(std::move(o.output)) {
    o.pid = -1;
    o.out_fd = -1;
  }
  Child& operator=(Child&& o) noexcept {
    std::swap(pid, o.pid);
    std::swap(out_fd, o.out_fd);
    std::swap(output, o.output);
    return *this;
  }
};

}  // namespace freekv::testing
