#include "common/flag_util.h"

#include <glog/logging.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace freekv {
namespace {
std::vector<std::string>* g_flag_files = nullptr;
}  // namespace

void parse_service_flags(int argc, char** argv, const std::string& usage, const std::vector<std::string>& flag_files) {
  absl::SetProgramUsageMessage(usage);
  g_flag_files = new std::vector<std::string>(flag_files);  // lives for the process
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    for (const std::string& f : *g_flag_files) {
      if (absl::EndsWith(file, f)) return true;
    }
    return false;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a == "--") break;
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      const size_t end = std::min(a.find('='), a.size());
      std::replace(a.begin() + 2, a.begin() + long(end), '-', '_');
    }
  }
  std::vector<char*> argv2;
  for (std::string& a : args) argv2.push_back(a.data());
  argv2.push_back(nullptr);
  absl::ParseCommandLine(argc, argv2.data());
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
}

static sigset_t stop_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  return sigs;
}

void block_stop_signals() {
  const sigset_t sigs = stop_signals();
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int wait_for_stop_signal() {
  const sigset_t sigs = stop_signals();
  int sig = 0;
  sigwait(&sigs, &sig);
  return sig;
}

}  // namespace freekv
