// freekv-kvstore: the host KV-memory server (DESIGN §1). One per host; workers attach to it over a
// unix socket and exchange KV pages with it through shared memory.
//
//   freekv-kvstore --listen unix:/run/freekv/kvstore.sock --pool-name freekv-pool --pool-size 8GiB
//   freekv-kvstore --listen unix:/run/freekv/kvstore.sock --stats      # health, pool stats, sessions (JSON)
//   freekv-kvstore --pool-name freekv-pool --remove-pool               # delete the segment (loses sessions)
//
// SIGINT/SIGTERM stop it cleanly. The pool segment outlives the process: starting again with the same
// --pool-name reattaches every session and committed page.
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config_check.h"
#include "common/flag_util.h"
#include "common/grpc_util.h"
#include "common/service_metrics.h"
#include "common/shm.h"
#include "common/units.h"
#include "freekv/v1/kvstore.grpc.pb.h"
#include "kvstore/kvstore_metrics.h"
#include "kvstore/server.h"

ABSL_FLAG(std::string, listen, "unix:/tmp/freekv-kvstore.sock",
          "Where to serve the control API: unix:PATH (unix sockets only: workers must share this host's "
          "memory). The socket file is created with mode 0600; a stale socket left by a crash is replaced.");
ABSL_FLAG(std::string, pool_name, "freekv-pool",
          "Name of the KV pool's shared-memory segment, /dev/shm/NAME (letters, digits, '.', '_', '-'). "
          "If it exists it is reattached: sessions and committed pages survive restarts.");
ABSL_FLAG(std::string, pool_size, "4GiB",
          "Size of the pool segment, with units (8GiB, 512MiB). Must equal the size of an existing segment.");
ABSL_FLAG(std::string, block_size, "144KiB",
          "Bytes of one pool block = one (session, layer, page): n_kv_heads × 2 × page_tokens × head_dim × "
          "dtype bytes of KV plus n_kv_heads × 3 × head_dim × 4 bytes of key statistics (144 KiB fits 8 KV "
          "heads × 32 tokens × 128 dims in bf16). A multiple of 4KiB; sessions whose page is larger are "
          "refused. Must equal the block size of an existing segment.");
ABSL_FLAG(int32_t, max_sessions, 1024,
          "Session slots in the pool (about 10 KiB of the segment each). Must equal an existing segment's.");
ABSL_FLAG(bool, mlock, true,
          "Lock the pool in memory (mlock). If the memlock limit forbids it, a warning is logged and the pool "
          "stays swappable; raise the limit with `ulimit -l unlimited` or LimitMEMLOCK=infinity.");
ABSL_FLAG(int32_t, gather_threads, 1,
          "Threads copying the chunks of one recall buffer, per attached worker (1 = the worker's channel "
          "thread alone).");
ABSL_FLAG(int32_t, staging_pairs, 4,
          "Staging pairs a worker gets when it does not ask for a number (= recalls it may have in flight).");
ABSL_FLAG(int32_t, max_staging_pairs, 64, "Most staging pairs one worker may ask for when it attaches.");
ABSL_FLAG(std::string, staging_buffer, "1MiB",
          "Default bytes of each of the two buffers of a staging pair (a multiple of 4KiB; 1MiB = 64 chunks "
          "of 16KiB).");
ABSL_FLAG(int32_t, max_recall_items, 4096,
          "Most items (kv_head, page) one recall may carry; also what a worker gets when it does not ask.");
ABSL_FLAG(std::string, max_worker_staging, "256MiB",
          "Most staging memory (pairs × 2 × buffer) one worker may ask for when it attaches.");
ABSL_FLAG(int32_t, max_workers, 64, "Most workers attached at once.");
ABSL_FLAG(bool, cuda_register, true,
          "Where built with CUDA: register the pool with CUDA as pinned, mapped memory, which GPU workers' "
          "recalls read (skipped with a log line when no GPU is visible).");
ABSL_FLAG(bool, stats, false,
          "Do not serve: connect to --listen, print health, pool stats and sessions as JSON, and exit "
          "(0 when the kvstore answers and is SERVING, 1 otherwise).");
ABSL_FLAG(bool, check_config, false,
          "Do not serve: validate the flags (sizes, --listen, pool size against available and lockable memory), "
          "print what the kvstore would do, and exit 0, or 1 listing every problem.");
ABSL_FLAG(bool, private_pool, false,
          "For a kvstore that one command starts for itself (freekv run, bench, eval): remove the pool segment "
          "when stopping (its sessions are lost), and stop when the process that started it exits, however it "
          "exits (kill -9 included), so nothing outlives the command.");
ABSL_FLAG(bool, remove_pool, false,
          "Do not serve: delete the segment /dev/shm/<--pool-name> (every session in it is lost) and exit. "
          "Refused while a kvstore holds the pool.");

namespace {

using freekv::kvstore::KvstoreServer;
using freekv::kvstore::ServerOptions;

int fail(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "freekv-kvstore: %s%s\n", what.c_str(), std::string(s.message()).c_str());
  return 1;
}

int run_stats(const std::string& listen) {
  auto path = freekv::kvstore::unix_socket_path(listen);
  if (!path.ok()) return fail("", path.status());
  auto channel = grpc::CreateChannel("unix:" + *path, grpc::InsecureChannelCredentials());
  const std::string health = freekv::health_status(channel, std::chrono::seconds(3));
  auto stub = freekv::v1::KvStore::NewStub(channel);
  freekv::v1::GetPoolStatsResponse stats;
  freekv::v1::ListSessionsResponse sessions;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    grpc::Status s = stub->GetPoolStats(&ctx, freekv::v1::GetPoolStatsRequest(), &stats);
    if (!s.ok()) {
      std::printf("{\n  \"health\": \"%s\",\n  \"error\": \"GetPoolStats: %s\"\n}\n", health.c_str(),
                  s.error_message().c_str());
      return 1;
    }
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    (void)stub->ListSessions(&ctx, freekv::v1::ListSessionsRequest(), &sessions);
  }
  std::printf("{\n\"health\": \"%s\",\n\"pool\": %s,\n\"sessions\": %s\n}\n", health.c_str(),
              freekv::proto_to_json(stats.stats(), true).c_str(), freekv::proto_to_json(sessions, true).c_str());
  return health == "SERVING" ? 0 : 1;
}

// --check-config: every problem is listed; nothing is created or attached.
int check_config() {
  freekv::ConfigCheck c("freekv-kvstore");
  const std::string listen = absl::GetFlag(FLAGS_listen);
  auto path = freekv::kvstore::unix_socket_path(listen);
  if (!path.ok()) c.error("--listen: " + std::string(path.status().message()));
  freekv::check_metrics_listen(c);
  const std::string name = absl::GetFlag(FLAGS_pool_name);
  bool name_ok = !name.empty() && name.size() < 200;
  for (char ch : name) name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-');
  if (!name_ok) c.error("--pool-name: '" + name + "' must be letters, digits, '.', '_', '-'");
  auto pool = c.size("pool-size", absl::GetFlag(FLAGS_pool_size));
  auto block = c.size("block-size", absl::GetFlag(FLAGS_block_size));
  auto staging = c.size("staging-buffer", absl::GetFlag(FLAGS_staging_buffer));
  c.size("max-worker-staging", absl::GetFlag(FLAGS_max_worker_staging));
  if (block && (*block == 0 || *block % 4096 != 0)) c.error("--block-size must be a non-zero multiple of 4KiB");
  if (staging && (*staging == 0 || *staging % 4096 != 0)) c.error("--staging-buffer must be a non-zero multiple of 4KiB");
  if (pool && block && *block != 0 && *pool < *block * 2) c.error("--pool-size is smaller than two blocks");
  if (absl::GetFlag(FLAGS_max_sessions) < 1) c.error("--max-sessions must be >= 1");
  if (absl::GetFlag(FLAGS_max_workers) < 1) c.error("--max-workers must be >= 1");
  if (absl::GetFlag(FLAGS_staging_pairs) < 1) c.error("--staging-pairs must be >= 1");
  if (absl::GetFlag(FLAGS_max_staging_pairs) < absl::GetFlag(FLAGS_staging_pairs)) {
    c.error("--max-staging-pairs must be >= --staging-pairs");
  }
  if (absl::GetFlag(FLAGS_max_recall_items) < 1) c.error("--max-recall-items must be >= 1");
  if (absl::GetFlag(FLAGS_gather_threads) < 1) c.error("--gather-threads must be >= 1");
  if (pool) {
    struct stat st{};
    const bool exists = stat(("/dev/shm/" + name).c_str(), &st) == 0;
    if (exists && uint64_t(st.st_size) < *pool) {
      c.warning("/dev/shm/" + name + " exists with " + freekv::human_bytes(uint64_t(st.st_size)) +
                ", the kvstore will refuse --pool-size " + freekv::human_bytes(*pool) + " unless they match");
    }
    auto avail = freekv::mem_available_bytes();
    // An existing segment is already counted as used memory; only a new one must fit.
    if (!exists && avail && *pool > *avail) {
      c.error("--pool-size " + freekv::human_bytes(*pool) + " exceeds MemAvailable " + freekv::human_bytes(*avail));
    }
    const uint64_t shm_free = freekv::shm_free_bytes();
    if (!exists && *pool > shm_free) {
      c.error("--pool-size " + freekv::human_bytes(*pool) + " exceeds the " + freekv::human_bytes(shm_free) +
              " free in /dev/shm (raise its size, e.g. the emptyDir sizeLimit, or lower --pool-size)");
    }
    const uint64_t lock = freekv::memlock_limit_bytes();
    if (absl::GetFlag(FLAGS_mlock) && lock < *pool) {
      c.warning("memlock limit " + freekv::human_bytes(lock) + " < pool " + freekv::human_bytes(*pool) +
                ": the pool will stay swappable (raise with LimitMEMLOCK=infinity or ulimit -l unlimited)");
    }
  }
  std::string summary;
  if (c.ok()) {
    summary = absl::StrCat("Would serve the KvStore control API and health on unix:", *path, ", create or reattach ",
                           "the pool /dev/shm/", name, " of ", freekv::human_bytes(*pool), " in blocks of ",
                           freekv::human_bytes(*block), " (", absl::GetFlag(FLAGS_max_sessions), " session slots, ",
                           (absl::GetFlag(FLAGS_mlock) ? "mlocked" : "not locked"), ") for up to ",
                           absl::GetFlag(FLAGS_max_workers), " workers; ", freekv::metrics_listen_summary(), ".");
  }
  return c.finish(summary);
}

}  // namespace

int main(int argc, char** argv) {
  freekv::parse_service_flags(
      argc, argv,
      "the freekv host KV-memory server.\n\n"
      "Owns the host KV pool (a shared-memory segment of fixed-size blocks with the sessions' page tables and\n"
      "token ids inside it), serves the gRPC control API (freekv.v1.KvStore, grpc.health.v1.Health,\n"
      "reflection) on a unix socket, and moves pages to and from workers through shared memory.\n\n"
      "  freekv-kvstore --listen unix:/tmp/kv.sock --pool-name freekv-pool --pool-size 8GiB\n"
      "  freekv-kvstore --listen unix:/tmp/kv.sock --stats\n"
      "  freekv-kvstore --pool-name freekv-pool --remove-pool\n\n"
      "Flags may be written with dashes or underscores (--pool-name = --pool_name).",
      {"kvstore/main.cc", freekv::kMetricsFlagFile});

  if (absl::GetFlag(FLAGS_check_config)) return check_config();
  if (absl::GetFlag(FLAGS_stats)) return run_stats(absl::GetFlag(FLAGS_listen));

  const std::string pool_name = absl::GetFlag(FLAGS_pool_name);
  if (absl::GetFlag(FLAGS_remove_pool)) {
    auto shm = freekv::SharedMemory::open(pool_name, true);
    if (!shm.ok()) return fail("", shm.status());
    if (absl::Status s = (*shm)->lock_exclusive(); !s.ok()) return fail("", s);
    if (absl::Status s = freekv::SharedMemory::unlink(pool_name); !s.ok()) return fail("", s);
    std::printf("removed /dev/shm/%s\n", pool_name.c_str());
    return 0;
  }

  ServerOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.pool.name = pool_name;
  o.pool.mlock = absl::GetFlag(FLAGS_mlock);
  o.pool.max_sessions = uint32_t(std::max(0, absl::GetFlag(FLAGS_max_sessions)));
  auto size = [](const char* flag, const std::string& v) -> absl::StatusOr<uint64_t> {
    auto r = freekv::parse_size(v);
    if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", std::string(r.status().message())));
    return r;
  };
  auto pool_size = size("pool-size", absl::GetFlag(FLAGS_pool_size));
  auto block_size = size("block-size", absl::GetFlag(FLAGS_block_size));
  auto staging_buffer = size("staging-buffer", absl::GetFlag(FLAGS_staging_buffer));
  auto max_staging = size("max-worker-staging", absl::GetFlag(FLAGS_max_worker_staging));
  for (const auto* r : {&pool_size, &block_size, &staging_buffer, &max_staging}) {
    if (!r->ok()) return fail("", r->status());
  }
  o.pool.pool_bytes = *pool_size;
  o.pool.block_bytes = *block_size;
  o.default_staging_buffer_bytes = *staging_buffer;
  o.max_worker_staging_bytes = *max_staging;
  o.default_staging_pairs = uint32_t(std::max(1, absl::GetFlag(FLAGS_staging_pairs)));
  o.max_staging_pairs = uint32_t(std::max(absl::GetFlag(FLAGS_staging_pairs), absl::GetFlag(FLAGS_max_staging_pairs)));
  o.max_recall_items = uint32_t(std::max(1, absl::GetFlag(FLAGS_max_recall_items)));
  o.max_workers = uint32_t(std::max(1, absl::GetFlag(FLAGS_max_workers)));
  o.gather_threads = absl::GetFlag(FLAGS_gather_threads);
  o.cuda_register = absl::GetFlag(FLAGS_cuda_register);

  freekv::block_stop_signals();  // before the server's threads start
  // A private kvstore stops with its parent: SIGTERM arrives like any stop (the parent that spawned it
  // set the parent-death signal before exec; here the case where the parent was already gone).
  if (absl::GetFlag(FLAGS_private_pool) && getppid() == 1) return fail("", absl::AbortedError("the parent exited"));

  freekv::MetricsRegistry metrics;
  o.metrics = &metrics;
  auto server = KvstoreServer::start(o);
  if (!server.ok()) return fail("cannot start: ", server.status());
  freekv::kvstore::export_kvstore_metrics(server->get(), &metrics);
  auto metrics_server = freekv::serve_metrics("freekv-kvstore", &metrics);
  if (!metrics_server.ok()) return fail("", metrics_server.status());
  std::fprintf(stderr, "freekv-kvstore: listening on unix:%s, pool /dev/shm/%s\n", (*server)->socket_path().c_str(),
               pool_name.c_str());
  const int sig = freekv::wait_for_stop_signal();
  const bool private_pool = absl::GetFlag(FLAGS_private_pool);
  LOG(INFO) << "signal " << sig << ": shutting down "
            << (private_pool ? "and removing the private pool" : "(the pool and its sessions stay in /dev/shm)");
  metrics_server->reset();
  (*server)->shutdown();
  server->reset();  // detaches the pool before its segment goes
  if (private_pool) freekv::SharedMemory::unlink(pool_name).IgnoreError();
  return 0;
}
