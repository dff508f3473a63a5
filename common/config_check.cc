#include "common/config_check.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/units.h"

namespace freekv {

std::optional<uint64_t> ConfigCheck::size(const std::string& flag, const std::string& value) {
  auto r = parse_size(value);
  if (!r.ok()) {
    error("--" + flag + ": " + std::string(r.status().message()));
    return std::nullopt;
  }
  return *r;
}

void ConfigCheck::host_port(const std::string& flag, const std::string& value) {
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    error("--" + flag + ": '" + value + "' is not host:port");
    return;
  }
  const std::string host = value.substr(0, colon), port = value.substr(colon + 1);
  bool digits = !port.empty() && port.size() <= 5;
  for (char c : port) digits = digits && c >= '0' && c <= '9';
  if (!digits || std::stoul(port) > 65535) {
    error("--" + flag + ": port '" + port + "' of '" + value + "' is not a number in 0..65535");
    return;
  }
  if (host.front() == '[' ? host.back() != ']' : host.find(':') != std::string::npos) {
    error("--" + flag + ": host '" + host + "' of '" + value + "' is not a name, IPv4 address or [IPv6] address");
  }
}

void ConfigCheck::readable_file(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  if (access(path.c_str(), R_OK) != 0) {
    error("--" + flag + ": cannot read " + path);
    return;
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string word;
  ss >> word;
  if (word.empty()) error("--" + flag + ": " + path + " is empty (it should hold the token)");
}

int ConfigCheck::finish(const std::string& summary) const {
  for (const std::string& w : warnings_) std::fprintf(stderr, "%s: warning: %s\n", program_.c_str(), w.c_str());
  if (!errors_.empty()) {
    std::fprintf(stderr, "%s: config has %zu error(s):\n", program_.c_str(), errors_.size());
    for (const std::string& e : errors_) std::fprintf(stderr, "  - %s\n", e.c_str());
    return 1;
  }
  std::printf("%s: config OK. %s\n", program_.c_str(), summary.c_str());
  return 0;
}

std::optional<uint64_t> mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

uint64_t memlock_limit_bytes() {
  rlimit r{};
  if (getrlimit(RLIMIT_MEMLOCK, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
  return uint64_t(r.rlim_cur);
}

std::string human_bytes(uint64_t bytes) {
  char buf[64];
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace freekv
