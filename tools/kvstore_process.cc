#include "tools/kvstore_process.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

namespace freekv {
namespace {

// freekv-kvstore is built next to the `freekv` binary.
std::string sibling_binary(const char* name) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / name).string();
}

// The child gets SIGTERM when this thread's process exits, whatever ends it (kill -9 included).
pid_t spawn(const std::vector<std::string>& args, bool quiet) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);  // the parent died before the line above took effect
    if (quiet) {
      FILE* null = std::fopen("/dev/null", "w");
      if (null != nullptr) {
        dup2(fileno(null), STDOUT_FILENO);
        dup2(fileno(null), STDERR_FILENO);
      }
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvstoreProcess>> KvstoreProcess::start(const std::string& pool_size,
                                                                      const std::string& block_size) {
  std::unique_ptr<KvstoreProcess> p(new KvstoreProcess());
  p->binary_ = sibling_binary("freekv-kvstore");
  if (access(p->binary_.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot start a kvstore: ", p->binary_, " is missing; build it (scripts/build.sh)"));
  }
  const std::string tag = absl::StrCat("freekv-private-", getpid());
  p->socket_ = absl::StrCat("/tmp/", tag, ".sock");
  p->pid_ = spawn({p->binary_, "--listen=unix:" + p->socket_, "--pool_name=" + tag, "--pool_size=" + pool_size,
                   "--block_size=" + block_size, "--mlock=false", "--staging_pairs=4", "--max_worker_staging=1GiB",
                   "--private_pool"},
                  /*quiet=*/true);
  if (p->pid_ < 0) return absl::UnavailableError("cannot fork a kvstore process");
  for (int i = 0; i < 200; ++i) {  // up to 10 s for the socket to appear
    int status;
    if (waitpid(p->pid_, &status, WNOHANG) == p->pid_) {
      p->pid_ = -1;
      return absl::UnavailableError(absl::StrCat("the private kvstore exited at start (status ", status,
                                                 "); run ", p->binary_, " by hand to see why"));
    }
    if (std::filesystem::exists(p->socket_)) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("the private kvstore did not open its socket within 10 s");
}

KvstoreProcess::~KvstoreProcess() {
  if (pid_ > 0) {  // it removes its pool as it stops (--private_pool)
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
  }
}

}  // namespace freekv
