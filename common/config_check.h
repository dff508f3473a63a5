// --check-config support shared by the service binaries: collect every problem with the flags instead of
// stopping at the first, print what the process would do, and exit 0 or 1 with all the reasons.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace freekv {

class ConfigCheck {
 public:
  explicit ConfigCheck(std::string program) : program_(std::move(program)) {}

  void error(const std::string& reason) { errors_.push_back(reason); }
  void warning(const std::string& reason) { warnings_.push_back(reason); }
  bool ok() const { return errors_.empty(); }
  size_t error_count() const { return errors_.size(); }

  // Parses a size flag ("8GiB"); records an error naming the flag and returns nullopt when it is bad.
  std::optional<uint64_t> size(const std::string& flag, const std::string& value);
  // host:port with a numeric port in 0..65535 (the host may be a name, an IPv4 address or [IPv6]).
  void host_port(const std::string& flag, const std::string& value);
  // A readable token file holding one word (common/grpc_util's read_token_file rules are checked at start).
  void readable_file(const std::string& flag, const std::string& path);

  // Prints "<program>: config OK: <summary>" plus warnings to stdout, or every error to stderr; returns
  // the exit status (0 or 1).
  int finish(const std::string& summary) const;

 private:
  std::string program_;
  std::vector<std::string> errors_, warnings_;
};

// /proc/meminfo MemAvailable in bytes (nullopt when unreadable).
std::optional<uint64_t> mem_available_bytes();
// RLIMIT_MEMLOCK soft limit in bytes (UINT64_MAX = unlimited).
uint64_t memlock_limit_bytes();
// "8.0 GiB" style rendering for messages.
std::string human_bytes(uint64_t bytes);

}  // namespace freekv
