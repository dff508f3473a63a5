#include "tools/service_stack.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/grpc_util.h"
#include "common/tls.h"
#include "freekv/v1/admin.grpc.pb.h"

namespace freekv {
namespace {

using Clock = std::chrono::steady_clock;

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status child_exited(ChildProcess* child, int status) {
  return absl::UnavailableError(absl::StrCat(child->name(), " exited while starting (wait status ", status, "); its log ",
                                             child->log_path(), " ends with:\n", child->log_tail(2000)));
}

}  // namespace

std::string binary_dir() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).parent_path().string();
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::start(const std::vector<std::string>& args,
                                                                   const std::string& log_path) {
  if (access(args[0].c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(args[0], " is missing; build it (scripts/build.sh)"));
  }
  std::unique_ptr<ChildProcess> c(new ChildProcess());
  c->name_ = std::filesystem::path(args[0]).filename().string();
  c->log_ = log_path;
  const pid_t parent = getpid();
  // Everything the child needs is made before fork(): other threads of this process may hold the
  // allocator's lock at that moment, so the child calls only async-signal-safe functions.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  pid_t pid = fork();
  if (pid < 0) return absl::UnavailableError(absl::StrCat("cannot fork ", c->name_));
  if (pid == 0) {
    setpgid(0, 0);                       // the terminal's Ctrl-C goes to the parent only
    prctl(PR_SET_PDEATHSIG, SIGTERM);    // and the child never outlives it
    if (getppid() != parent) _exit(1);   // the parent died before prctl
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  c->pid_ = pid;
  return c;
}

ChildProcess::~ChildProcess() { stop(std::chrono::seconds(5)); }

bool ChildProcess::running(int* status) {
  if (pid_ <= 0) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    if (status != nullptr) *status = st;
    return false;
  }
  return true;
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

void ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const auto until = Clock::now() + grace;
  while (Clock::now() < until) {
    if (!running()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  int st;
  waitpid(pid_, &st, 0);
  pid_ = -1;
}

std::string ChildProcess::log_tail(size_t bytes) const {
  std::string all = read_all(log_);
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

absl::StatusOr<std::string> wait_for_file_line(const std::string& path, ChildProcess* child, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    std::string text = read_all(path);
    if (size_t nl = text.find('\n'); nl != std::string::npos) return text.substr(0, nl);
    int status = 0;
    if (child != nullptr && !child->running(&status)) return child_exited(child, status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(child ? child->name() : "the process", " did not write ", path, " within ",
                                                  timeout.count(), " ms; see ", child ? child->log_path() : "its log"));
}

absl::Status wait_for_serving(const std::string& address, ChildProcess* child, std::chrono::milliseconds timeout,
                              std::shared_ptr<grpc::ChannelCredentials> credentials) {
  const auto until = Clock::now() + timeout;
  std::string last;
  auto channel = make_channel(address, std::move(credentials));
  while (Clock::now() < until) {
    last = health_status(channel, std::chrono::milliseconds(500));
    if (last == "SERVING") return absl::OkStatus();
    int status = 0;
    if (child != nullptr && !child->running(&status)) return child_exited(child, status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(address, " is not serving after ", timeout.count(), " ms (", last, ")"));
}

// --metrics_listen for the process `offset` ports above StackOptions::metrics_port ("" = none).
static std::string metrics_flag(const StackOptions& o, int offset) {
  return absl::StrCat("--metrics_listen=", o.metrics_port > 0 ? absl::StrCat("127.0.0.1:", o.metrics_port + offset) : "");
}

absl::StatusOr<std::unique_ptr<ServiceStack>> ServiceStack::start(const StackOptions& options) {
  std::unique_ptr<ServiceStack> s(new ServiceStack());
  s->options_ = options;
  StackOptions& o = s->options_;
  if (o.bin_dir.empty()) o.bin_dir = binary_dir();
  if (o.run_dir.empty()) return absl::InvalidArgumentError("a run directory is needed");
  std::error_code ec;
  std::filesystem::create_directories(o.run_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", o.run_dir, ": ", ec.message()));
  chmod(o.run_dir.c_str(), 0700);
  if (o.pool_name.empty()) o.pool_name = std::filesystem::path(o.run_dir).filename().string();
  if (o.admin_token_file.empty()) o.admin_token_file = o.run_dir + "/admin-token";
  if (access(o.admin_token_file.c_str(), F_OK) != 0) {
    FREEKV_RETURN_IF_ERROR(create_token_file(o.admin_token_file));
  }

  s->kvstore_socket_ = o.run_dir + "/kvstore.sock";
  FREEKV_RETURN_IF_ERROR(s->start_kvstore());

  const std::string coord_file = o.run_dir + "/coordinator.address";
  std::filesystem::remove(coord_file, ec);
  std::vector<std::string> coordinator_args = {o.bin_dir + "/freekv-coordinator", "--listen=" + o.coordinator_listen,
                                               "--admin_token_file=" + o.admin_token_file,
                                               absl::StrCat("--heartbeat_interval_ms=", o.heartbeat_interval_ms),
                                               "--address_file=" + coord_file, metrics_flag(o, 0)};
  coordinator_args.insert(coordinator_args.end(), o.coordinator_flags.begin(), o.coordinator_flags.end());
  const std::string http_file = o.run_dir + "/http.address";
  std::filesystem::remove(http_file, ec);
  if (!o.http_listen.empty()) {
    coordinator_args.push_back("--http_listen=" + o.http_listen);
    coordinator_args.push_back("--http_address_file=" + http_file);
  }
  FREEKV_RETURN_IF_ERROR(check_tls_flag_pair(o.tls_cert_file, o.tls_key_file));
  if (!o.tls_cert_file.empty()) {
    coordinator_args.push_back("--tls_cert_file=" + o.tls_cert_file);
    coordinator_args.push_back("--tls_key_file=" + o.tls_key_file);
    if (o.tls_ca_file.empty()) o.tls_ca_file = o.tls_cert_file;
  }
  FREEKV_ASSIGN_OR_RETURN(s->coordinator_credentials_, channel_credentials(o.tls_ca_file));
  FREEKV_ASSIGN_OR_RETURN(s->coordinator_, ChildProcess::start(coordinator_args, o.run_dir + "/coordinator.log"));
  FREEKV_ASSIGN_OR_RETURN(s->coordinator_address_, wait_for_file_line(coord_file, s->coordinator_.get(), o.start_timeout));
  if (!o.http_listen.empty()) {
    FREEKV_ASSIGN_OR_RETURN(s->http_address_, wait_for_file_line(http_file, s->coordinator_.get(), o.start_timeout));
  }
  FREEKV_RETURN_IF_ERROR(
      wait_for_serving(s->coordinator_address_, s->coordinator_.get(), o.start_timeout, s->coordinator_credentials_));
  FREEKV_RETURN_IF_ERROR(s->add_worker().status());
  return s;
}

absl::Status ServiceStack::start_kvstore() {
  const StackOptions& o = options_;
  FREEKV_ASSIGN_OR_RETURN(kvstore_, ChildProcess::start({o.bin_dir + "/freekv-kvstore", "--listen=unix:" + kvstore_socket_,
                                                         "--pool_name=" + o.pool_name, "--pool_size=" + o.pool_size,
                                                         "--block_size=" + o.block_size, "--mlock=false",
                                                         "--max_worker_staging=1GiB", metrics_flag(o, 1)},
                                                        o.run_dir + "/kvstore.log"));
  return wait_for_serving("unix:" + kvstore_socket_, kvstore_.get(), o.start_timeout);
}

absl::Status ServiceStack::restart_kvstore(int sig) {
  kvstore_->signal(sig);
  kvstore_->stop(std::chrono::seconds(10));
  return start_kvstore();
}

absl::StatusOr<size_t> ServiceStack::add_worker(const std::vector<std::string>& extra_flags) {
  const StackOptions& o = options_;
  const int n = next_worker_++;
  const std::string addr_file = absl::StrCat(o.run_dir, "/worker", n, ".address");
  std::error_code ec;
  std::filesystem::remove(addr_file, ec);
  std::vector<std::string> args = {o.bin_dir + "/freekv-worker", "--listen=127.0.0.1:0", "--kvstore=" + kvstore_socket_,
                                   "--coordinator=" + coordinator_address_, "--token_file=" + o.admin_token_file,
                                   "--address_file=" + addr_file, absl::StrCat("--name=worker", n), metrics_flag(o, 2 + n),
                                   "--coordinator_tls_ca_file=" + o.tls_ca_file};
  if (!o.model.empty()) args.push_back("--model=" + o.model);
  args.insert(args.end(), o.worker_flags.begin(), o.worker_flags.end());
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  FREEKV_ASSIGN_OR_RETURN(auto child, ChildProcess::start(args, absl::StrCat(o.run_dir, "/worker", n, ".log")));
  FREEKV_ASSIGN_OR_RETURN(std::string address, wait_for_file_line(addr_file, child.get(), o.start_timeout));
  FREEKV_RETURN_IF_ERROR(wait_for_serving(address, child.get(), o.start_timeout));
  workers_.push_back(std::move(child));
  worker_addresses_.push_back(address);
  // Registered: the coordinator lists it as ready.
  const auto until = Clock::now() + o.start_timeout;
  auto stub = v1::Admin::NewStub(make_channel(coordinator_address_, coordinator_credentials_));
  FREEKV_ASSIGN_OR_RETURN(std::string token, read_token_file(o.admin_token_file));
  while (Clock::now() < until) {
    grpc::ClientContext ctx;
    add_bearer(&ctx, token);
    ctx.set_deadline(deadline_in(2000));
    v1::ListWorkersResponse resp;
    if (stub->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp).ok()) {
      for (const auto& w : resp.workers()) {
        if (w.address() == address && w.state() == "ready") return workers_.size() - 1;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("worker at ", address, " did not register with the coordinator; see ",
                                                  workers_.back()->log_path()));
}

absl::Status ServiceStack::wait_for_ready_workers(int n, std::chrono::milliseconds timeout) {
  auto stub = v1::Admin::NewStub(make_channel(coordinator_address_, coordinator_credentials_));
  FREEKV_ASSIGN_OR_RETURN(std::string token, read_token_file(options_.admin_token_file));
  const auto until = Clock::now() + timeout;
  int ready = 0;
  while (Clock::now() < until) {
    grpc::ClientContext ctx;
    add_bearer(&ctx, token);
    ctx.set_deadline(deadline_in(2000));
    v1::ListWorkersResponse resp;
    ready = 0;
    if (stub->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp).ok()) {
      for (const auto& w : resp.workers()) ready += w.state() == "ready" ? 1 : 0;
      if (ready == n) return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(ready, " workers ready, expected ", n));
}

ChildProcess* ServiceStack::exited_child() {
  if (kvstore_ && !kvstore_->running()) return kvstore_.get();
  if (coordinator_ && !coordinator_->running()) return coordinator_.get();
  for (auto& w : workers_) {
    if (w && w->pid() > 0 && !w->running()) return w.get();
  }
  return nullptr;
}

void ServiceStack::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (coordinator_) coordinator_->stop(std::chrono::seconds(5));
  for (auto& w : workers_) {
    if (w) w->stop(std::chrono::seconds(15));
  }
  if (kvstore_) {
    kvstore_->stop(std::chrono::seconds(5));
    // The pool segment outlives the kvstore by design; this stack's pool goes with the stack.
    auto rm = ChildProcess::start({options_.bin_dir + "/freekv-kvstore", "--pool_name=" + options_.pool_name, "--remove_pool"},
                                  options_.run_dir + "/kvstore.log");
    if (rm.ok()) {
      for (int i = 0; i < 500 && (*rm)->running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::error_code ec;
  std::filesystem::remove(kvstore_socket_, ec);
}

ServiceStack::~ServiceStack() { stop(); }

}  // namespace freekv
