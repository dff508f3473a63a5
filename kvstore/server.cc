#include "kvstore/server.h"

#include <dirent.h>
#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <regex>

#include "common/grpc_util.h"
#include "common/service_metrics.h"
#include "common/units.h"
#include "freekv/v1/kvstore.grpc.pb.h"
#include "proto/convert/kv_geometry.h"

namespace freekv::kvstore {

namespace v1 = ::freekv::v1;

namespace {

void fill_info(const SessionSummary& s, v1::SessionInfo* out) {
  out->set_session_id(s.id);
  geometry_to_proto(s.geometry, out->mutable_geometry());
  out->set_slot(s.ref.slot);
  out->set_generation(s.ref.generation);
  out->set_epoch(s.ref.epoch);
  out->set_n_tokens(s.n_tokens);
  out->set_committed_pages(s.committed_pages);
  out->set_bytes(s.committed_pages * s.geometry.page_bytes());
  out->set_metadata_blocks(s.metadata_blocks);
  out->set_created_unix_ms(int64_t(s.created_unix_ns / 1000000));
  out->set_last_use_unix_ms(int64_t(s.last_use_unix_ns / 1000000));
  out->set_page_bytes(s.geometry.page_bytes());
  out->set_max_pages_per_layer(s.max_pages_per_layer);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    auto* lo = out->add_layers();
    lo->set_layer(uint32_t(l));
    lo->set_pages(s.layers[l].pages);
    lo->set_bytes(s.layers[l].pages * s.geometry.page_bytes());
    lo->set_highest_page(s.layers[l].highest_page);
  }
}

std::string random_nonce() {
  std::random_device rd;
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", unsigned(rd()));
  return buf;
}

// Removes /dev/shm/<pool>.ch<N>.<nonce> segments: channels of a previous kvstore of this pool. We hold
// the pool's lock, so no other kvstore serves them.
void remove_stale_channels(const std::string& pool_name) {
  DIR* d = opendir("/dev/shm");
  if (d == nullptr) return;
  std::string pattern = pool_name;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '.') pattern.replace(i++, 1, "\\.");
  }
  const std::regex re(pattern + "\\.ch[0-9]+\\.[0-9a-f]{8}");
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (std::regex_match(n, re)) {
      LOG(INFO) << "removing stale channel segment /dev/shm/" << n;
      SharedMemory::unlink(n).IgnoreError();
    }
  }
  closedir(d);
}

absl::Status prepare_socket_path(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path '", path, "' is longer than ",
                                                   sizeof(sockaddr_un{}.sun_path) - 1, " bytes"));
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("'", path, "' exists and is not a socket; refusing to replace it"));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    const bool live = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (live) {
      return absl::FailedPreconditionError(
          absl::StrCat("another process is listening on ", path, " (a kvstore already running?)"));
    }
  }
  LOG(INFO) << "removing stale socket " << path;
  unlink(path.c_str());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> unix_socket_path(const std::string& listen) {
  const std::string prefix = "unix:";
  if (listen.compare(0, prefix.size(), prefix) != 0 || listen.size() == prefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen '", listen, "' must be unix:PATH: the kvstore serves only its own host (the data plane is shared memory)"));
  }
  std::string path = listen.substr(prefix.size());
  if (path.compare(0, 2, "//") == 0) path = path.substr(2);
  if (path.empty()) return absl::InvalidArgumentError("--listen unix: needs a path");
  return path;
}

// ------------------------------------------------------------------------------------------------

class KvstoreServer::Service final : public v1::KvStore::Service {
 public:
  Service(KvstoreServer* s) : s_(s), start_(std::chrono::steady_clock::now()) {}

  void begin_shutdown() {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
    cv_.notify_all();
  }

  grpc::Status OpenSession(grpc::ServerContext*, const v1::OpenSessionRequest* req,
                           v1::OpenSessionResponse* resp) override {
    auto geo = geometry_from_proto(req->geometry());
    if (!geo.ok()) return to_grpc(geo.status());
    if (req->ephemeral_worker_id() != 0) {
      std::lock_guard lock(mu_);
      if (channels_.count(req->ephemeral_worker_id()) == 0) {
        return to_grpc(absl::InvalidArgumentError(absl::StrCat("no worker ", req->ephemeral_worker_id(),
                                                               " is attached to own an ephemeral session")));
      }
    }
    auto r = s_->pool_->open_session(req->session_id(), *geo, req->create_if_missing() || req->must_create(),
                                     req->ephemeral_worker_id(), req->must_create());
    if (!r.ok()) return to_grpc(r.status());
    fill_info(r->session, resp->mutable_session());
    resp->set_created(r->created);
    if (r->created) LOG(INFO) << "session '" << req->session_id() << "' created";
    return grpc::Status::OK;
  }

  grpc::Status CloseSession(grpc::ServerContext*, const v1::CloseSessionRequest* req,
                            v1::CloseSessionResponse* resp) override {
    auto r = s_->pool_->close_session(req->session_id(), req->writer_epoch());
    if (!r.ok()) return to_grpc(r.status());
    resp->set_blocks_freed(*r);
    LOG(INFO) << "session '" << req->session_id() << "' closed (" << *r << " blocks freed)";
    return grpc::Status::OK;
  }

  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse* resp) override {
    for (const SessionSummary& s : s_->pool_->list_sessions()) fill_info(s, resp->add_sessions());
    return grpc::Status::OK;
  }

  grpc::Status GetSession(grpc::ServerContext*, const v1::GetSessionRequest* req,
                          v1::GetSessionResponse* resp) override {
    auto r = s_->pool_->get_session(req->session_id());
    if (!r.ok()) return to_grpc(r.status());
    fill_info(*r, resp->mutable_session());
    if (req->include_token_ids()) {
      auto ids = s_->pool_->token_ids(req->session_id());
      if (!ids.ok()) return to_grpc(ids.status());
      resp->mutable_session()->mutable_token_ids()->Add(ids->begin(), ids->end());
    }
    return grpc::Status::OK;
  }

  grpc::Status GetPoolStats(grpc::ServerContext*, const v1::GetPoolStatsRequest*,
                            v1::GetPoolStatsResponse* resp) override {
    fill_pool_stats(resp->mutable_stats());
    return grpc::Status::OK;
  }

  void fill_pool_stats(v1::PoolStats* st) {
    const Pool& p = *s_->pool_;
    const PoolCounters c = p.counters();
    const RecallStats::Snapshot r = s_->stats_.snapshot();
    st->set_pool_name(p.name());
    st->set_pool_bytes(p.segment_bytes());
    st->set_block_bytes(p.block_bytes());
    st->set_blocks_total(c.blocks_total);
    st->set_blocks_used(c.blocks_total - c.blocks_free);
    st->set_blocks_free(c.blocks_free);
    st->set_blocks_data(c.blocks_data);
    st->set_blocks_metadata(c.blocks_metadata);
    st->set_blocks_pending(c.blocks_pending);
    st->set_sessions(c.sessions);
    st->set_max_sessions(c.max_sessions);
    {
      std::lock_guard lock(mu_);
      st->set_workers(uint32_t(channels_.size()));
    }
    st->set_bytes_recalled_total(r.bytes_total);
    st->set_chunks_recalled_total(r.chunks_total);
    st->set_recalls_total(r.recalls_total);
    st->set_recall_errors_total(r.errors_total);
    st->set_recall_gbps_last_minute(r.gbps_last_minute);
    st->set_recall_busy_gbps_last_minute(r.busy_gbps_last_minute);
    st->set_mlocked(p.mlocked());
    st->set_abi_version(dp::kAbiVersion);
    st->set_pool_starts(c.starts);
    st->set_uptime_s(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    uint64_t unused = 0;
    for (const SessionSummary& ss : p.list_sessions()) {
      unused += ss.committed_pages * (p.block_bytes() - ss.geometry.stored_page_bytes());
    }
    st->set_block_bytes_unused(unused);
    const ServerOptions& o = s_->options_;
    v1::WorkerLimits* lim = st->mutable_worker_limits();
    lim->set_default_staging_pairs(o.default_staging_pairs);
    lim->set_max_staging_pairs(o.max_staging_pairs);
    lim->set_default_staging_buffer_bytes(o.default_staging_buffer_bytes);
    lim->set_max_worker_staging_bytes(o.max_worker_staging_bytes);
    lim->set_max_recall_items(o.max_recall_items);
    lim->set_max_workers(o.max_workers);
  }

  grpc::Status AttachWorker(grpc::ServerContext* ctx, const v1::AttachWorkerRequest* req,
                            grpc::ServerWriter<v1::AttachWorkerResponse>* writer) override {
    const ServerOptions& o = s_->options_;
    ChannelConfig cfg;
    cfg.staging_pairs = req->staging_pairs() ? req->staging_pairs() : o.default_staging_pairs;
    cfg.staging_buffer_bytes = req->staging_buffer_bytes() ? req->staging_buffer_bytes() : o.default_staging_buffer_bytes;
    cfg.max_recall_items = req->max_recall_items() ? req->max_recall_items() : o.max_recall_items;
    cfg.gather_threads = o.gather_threads;
    // A worker asking beyond a limit is told both numbers and the kvstore flag that sets the limit.
    auto over = [](const std::string& what, uint64_t asked, uint64_t limit, const char* flag) {
      return to_grpc(absl::ResourceExhaustedError(absl::StrCat(
          "the worker asks for ", what, " of ", asked, " but this kvstore allows at most ", limit,
          " per worker; ask for less or start freekv-kvstore with ", flag, " >= ", asked)));
    };
    if (cfg.staging_pairs > o.max_staging_pairs) {
      return over("staging pairs", cfg.staging_pairs, o.max_staging_pairs, "--max-staging-pairs");
    }
    if (cfg.staging_buffer_bytes % 4096 != 0 || cfg.staging_buffer_bytes < 4096) {
      return to_grpc(absl::InvalidArgumentError("staging_buffer_bytes must be a positive multiple of 4 KiB"));
    }
    if (cfg.max_recall_items > o.max_recall_items) {
      return over("recall items", cfg.max_recall_items, o.max_recall_items, "--max-recall-items");
    }
    const uint64_t staging = uint64_t(cfg.staging_pairs) * 2 * cfg.staging_buffer_bytes;
    if (staging > o.max_worker_staging_bytes) {
      return over("staging bytes (pairs × 2 × buffer)", staging, o.max_worker_staging_bytes, "--max-worker-staging");
    }
    const bool want_cuda = !req->cuda_staging_handle().empty();
    CudaPushSpec cuda;
    if (want_cuda && !s_->pool_cuda_registered_) {
      return to_grpc(absl::FailedPreconditionError(
          "this kvstore's pool is not registered with CUDA, so it cannot push to a GPU worker: start "
          "freekv-kvstore with --cuda-register on a host with a visible GPU, or attach without CUDA handles"));
    }
    if (want_cuda) {
      cuda.staging_handle = req->cuda_staging_handle();
      cuda.event_handles.assign(req->cuda_event_handles().begin(), req->cuda_event_handles().end());
      cuda.device = req->cuda_device();
    }
    std::string worker_name = req->worker_name().substr(0, 64);
    if (worker_name.empty()) worker_name = ctx->peer();
    uint32_t id;
    {
      std::lock_guard lock(mu_);
      if (shutting_down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the kvstore is shutting down");
      if (channels_.size() >= o.max_workers) {
        return to_grpc(absl::ResourceExhaustedError(
            absl::StrCat(o.max_workers, " workers are attached already (--max-workers)")));
      }
      id = next_id_++;
    }
    const std::string name = absl::StrCat(s_->pool_->name(), ".ch", id, ".", random_nonce());
    auto ch = Channel::create(s_->pool_.get(), &s_->stats_, id, worker_name, name, cfg, want_cuda ? &cuda : nullptr);
    if (!ch.ok()) return to_grpc(ch.status());
    std::shared_ptr<Channel> channel = std::move(ch).value();
    {
      std::lock_guard lock(mu_);
      channels_[id] = channel;
    }
    v1::AttachWorkerResponse resp;
    resp.set_worker_id(id);
    resp.set_channel_shm_name(channel->shm_name());
    resp.set_channel_bytes(channel->bytes());
    resp.set_pool_shm_name(s_->pool_->name());
    resp.set_pool_bytes(s_->pool_->segment_bytes());
    resp.set_abi_version(dp::kAbiVersion);
    resp.set_staging_pairs(cfg.staging_pairs);
    resp.set_staging_buffer_bytes(cfg.staging_buffer_bytes);
    resp.set_max_recall_items(cfg.max_recall_items);
    resp.set_token_arena_bytes(cfg.token_arena_bytes);
    resp.set_cuda_push(channel->cuda_push());
    if (writer->Write(resp)) {
      // The stream stays open for the worker's life: its end (exit, crash, cancel) detaches the worker.
      std::unique_lock lock(mu_);
      while (!shutting_down_ && !ctx->IsCancelled()) cv_.wait_for(lock, std::chrono::milliseconds(50));
    }
    {
      std::lock_guard lock(mu_);
      channels_.erase(id);
    }
    channel.reset();  // stops the channel thread, returns uncommitted blocks, removes the segment
    return grpc::Status::OK;
  }

 private:
  KvstoreServer* s_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutting_down_ = false;
  uint32_t next_id_ = 1;
  std::map<uint32_t, std::shared_ptr<Channel>> channels_;
};

// ------------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<KvstoreServer>> KvstoreServer::start(const ServerOptions& options) {
  FREEKV_ASSIGN_OR_RETURN(std::string path, unix_socket_path(options.listen));
  if (options.gather_threads < 1 || options.gather_threads > 64) {
    return absl::InvalidArgumentError("--gather-threads must be 1..64");
  }
  std::unique_ptr<KvstoreServer> s(new KvstoreServer());
  s->options_ = options;
  s->socket_path_ = path;
  FREEKV_ASSIGN_OR_RETURN(s->pool_, Pool::open(options.pool));
  remove_stale_channels(s->pool_->name());
  FREEKV_RETURN_IF_ERROR(prepare_socket_path(path));

  if (options.cuda_register && cuda_push_built()) {
    // Pin and map the pool so that the push kernel reads it (cuda_push.h); without a device this just logs.
    absl::Status r = cuda_register_host(s->pool_->base(), s->pool_->segment_bytes());
    if (r.ok()) {
      s->pool_cuda_registered_ = true;
      LOG(INFO) << "pool registered with CUDA (cudaHostRegister)";
    } else {
      LOG(INFO) << "pool not registered with CUDA: " << r.message();
    }
  }

  s->service_ = std::make_unique<Service>(s.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(s->service_.get());
  if (options.metrics != nullptr) count_rpcs(&builder, options.metrics);
  // The socket is created 0600: only this user may talk to the kvstore.
  const mode_t old_mask = umask(0177);
  s->server_ = builder.BuildAndStart();
  umask(old_mask);
  if (s->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", path, " (see the gRPC error above)"));
  }
  chmod(path.c_str(), 0600);
  if (auto* health = s->server_->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus("freekv.v1.KvStore", true);
  }
  LOG(INFO) << "freekv-kvstore serving on unix:" << path << " (pool /dev/shm/" << s->pool_->name() << ")";
  return s;
}

v1::PoolStats KvstoreServer::pool_stats() const {
  v1::PoolStats st;
  service_->fill_pool_stats(&st);
  return st;
}

void KvstoreServer::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(false);
    service_->begin_shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    unlink(socket_path_.c_str());
  }
  if (pool_cuda_registered_) cuda_unregister_host(pool_->base());
  pool_cuda_registered_ = false;
  if (server_ != nullptr) LOG(INFO) << "freekv-kvstore stopped";
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void KvstoreServer::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return stopped_; });
}

KvstoreServer::~KvstoreServer() { shutdown(); }

}  // namespace freekv::kvstore
