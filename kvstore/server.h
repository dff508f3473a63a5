// freekv-kvstore as a library: the pool, the gRPC control service on a unix socket (health checking,
// reflection), and one data-plane channel per attached worker. main.cc wraps it; tests and the
// benchmark run it in-process.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "freekv/v1/kvstore.pb.h"
#include "kvstore/channel.h"
#include "kvstore/pool.h"
#include "kvstore/recall_stats.h"

namespace grpc {
class Server;
}

namespace freekv::kvstore {

struct ServerOptions {
  PoolOptions pool;
  std::string listen = "unix:/tmp/freekv-kvstore.sock";  // unix:PATH only (the data plane is host-local)
  // Channel sizes when AttachWorker leaves them 0, and the limits a worker may ask for (flags of the
  // same names; GetPoolStats reports them).
  uint32_t default_staging_pairs = 4;
  uint32_t max_staging_pairs = 64;
  uint64_t default_staging_buffer_bytes = 1 << 20;
  uint32_t max_recall_items = 4096;                  // also the default
  uint64_t max_worker_staging_bytes = 256ull << 20;  // pairs × 2 × buffer bytes per worker
  uint32_t max_workers = 64;
  int gather_threads = 1;      // copy threads per channel (the channel thread included)
  bool cuda_register = true;   // register the pool with CUDA (mapped) where CUDA is built, for the GPU push
  MetricsRegistry* metrics = nullptr;  // counts the control API's RPCs by method and code when set
};

class KvstoreServer {
 public:
  // Opens (or creates) the pool, removes channel segments a previous kvstore of this pool left behind,
  // and starts serving. FAILED_PRECONDITION when the socket is served by another process or the pool
  // is incompatible or in use.
  static absl::StatusOr<std::unique_ptr<KvstoreServer>> start(const ServerOptions& options);
  ~KvstoreServer();

  // Stops serving (idempotent, callable from any thread): detaches every worker, closes the socket.
  void shutdown();
  // Blocks until shutdown() was called.
  void wait();

  Pool* pool() const { return pool_.get(); }
  // What GetPoolStats answers: occupancy, sessions, attached workers, recall traffic.
  v1::PoolStats pool_stats() const;
  const std::string& socket_path() const { return socket_path_; }

  class Service;

 private:
  KvstoreServer() = default;

  ServerOptions options_;
  std::string socket_path_;
  std::unique_ptr<Pool> pool_;
  RecallStats stats_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  bool pool_cuda_registered_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shut_down_ = false;
  bool stopped_ = false;
};

// "unix:PATH" or "unix:///abs/path" → PATH; anything else INVALID_ARGUMENT.
absl::StatusOr<std::string> unix_socket_path(const std::string& listen);

}  // namespace freekv::kvstore
