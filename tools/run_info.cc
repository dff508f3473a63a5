#include "tools/run_info.h"

#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace freekv {

std::string machine_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return absl::StrCat(model, ", ", std::thread::hardware_concurrency(), " hardware threads");
}

std::string git_commit() {
  FILE* f = popen("git -C " FREEKV_SOURCE_DIR " rev-parse HEAD 2>/dev/null", "r");
  if (f == nullptr) return "unknown";
  char buf[64] = {0};
  std::string out = std::fgets(buf, sizeof(buf), f) != nullptr ? std::string(buf) : "unknown";
  pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

int64_t resident_bytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace freekv
