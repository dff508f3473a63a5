// A private freekv-kvstore started by a CLI command (`freekv run --kvstore spawn`, `freekv bench`,
// `freekv eval`) so that one command drives the same offload and recall path as a deployed worker.
// The child listens on a socket and owns a pool segment named after this process; both are removed
// when the object goes away, and when this process exits in any way (kill -9 included): the child runs
// with --private_pool and gets SIGTERM when its parent dies.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace freekv {

class KvstoreProcess {
 public:
  // pool_size and block_size with units ("8GiB", "64KiB"). Waits until the kvstore answers.
  static absl::StatusOr<std::unique_ptr<KvstoreProcess>> start(const std::string& pool_size, const std::string& block_size);
  ~KvstoreProcess();

  const std::string& socket_path() const { return socket_; }
  pid_t pid() const { return pid_; }  // tests stop and continue it (SIGSTOP, SIGCONT) to make recalls time out

 private:
  KvstoreProcess() = default;
  std::string binary_, socket_;
  pid_t pid_ = -1;
};

}  // namespace freekv
