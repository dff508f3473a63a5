#include "worker/kv/kvstore_client.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "common/grpc_util.h"
#include "common/units.h"
#include "freekv/v1/kvstore.grpc.pb.h"
#include "proto/convert/kv_geometry.h"

namespace freekv {

namespace v1 = ::freekv::v1;

class KvstoreClient::Impl {
 public:
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::KvStore::Stub> stub;
  grpc::ClientContext attach_ctx;
  std::unique_ptr<grpc::ClientReader<v1::AttachWorkerResponse>> attach_stream;
};

namespace {

constexpr int64_t kControlDeadlineS = 10;
constexpr int64_t kWaitSliceNs = 100'000'000;
// Spin this long before sleeping on a completion: an answer is usually microseconds away, and a futex
// wake-up costs about as much as copying a whole staging buffer.
constexpr int64_t kSpinNs = 300'000;

// A control RPC's failure, named after the call; UNAVAILABLE says the kvstore is out of reach.
absl::Status control_error(const grpc::Status& s, const std::string& what) {
  absl::Status st = from_grpc(s);
  if (absl::IsUnavailable(st)) st = absl::UnavailableError(absl::StrCat("kvstore unreachable (", st.message(), ")"));
  return annotate(st, what);
}

void set_deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(kControlDeadlineS));
}

}  // namespace

KvstoreClient::KvstoreClient() : impl_(std::make_unique<Impl>()) {}

KvstoreClient::~KvstoreClient() {
  impl_->attach_ctx.TryCancel();
  if (watcher_.joinable()) watcher_.join();
}

absl::StatusOr<std::unique_ptr<KvstoreClient>> KvstoreClient::connect(const std::string& unix_socket_path,
                                                                      const Options& options) {
  std::string path = unix_socket_path;
  if (path.compare(0, 5, "unix:") == 0) path = path.substr(5);
  if (path.compare(0, 2, "//") == 0) path = path.substr(2);
  std::unique_ptr<KvstoreClient> c(new KvstoreClient());
  FREEKV_RETURN_IF_ERROR(c->attach(path, options));
  return c;
}

absl::Status KvstoreClient::attach(const std::string& path, const Options& o) {
  timeout_ns_ = std::max<int64_t>(1, o.timeout_ms) * 1000000;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat("no freekv-kvstore socket at ", path, " (is the kvstore running, with --listen unix:",
                                               path, "?)"));
  }
  impl_->channel = grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
  if (!impl_->channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(kControlDeadlineS))) {
    return absl::UnavailableError(absl::StrCat("cannot reach freekv-kvstore at unix:", path, " (is it running?)"));
  }
  impl_->stub = v1::KvStore::NewStub(impl_->channel);
  v1::AttachWorkerRequest req;
  req.set_worker_name(o.worker_name);
  req.set_staging_pairs(o.staging_pairs);
  req.set_staging_buffer_bytes(o.staging_buffer_bytes);
  req.set_max_recall_items(o.max_recall_items);
  if (o.cuda_device >= 0) {
    if (o.staging_pairs == 0 || o.staging_buffer_bytes == 0) {
      return absl::InvalidArgumentError(
          "recalls into device memory need staging_pairs and staging_buffer_bytes set (the device staging is "
          "allocated before attaching)");
    }
    FREEKV_ASSIGN_OR_RETURN(device_staging_,
                            DeviceStaging::create(o.cuda_device, o.staging_pairs, o.staging_buffer_bytes));
    req.set_cuda_staging_handle(device_staging_->memory_handle());
    for (const std::string& h : device_staging_->event_handles()) req.add_cuda_event_handles(h);
    req.set_cuda_device(o.cuda_device);
  }
  impl_->attach_stream = impl_->stub->AttachWorker(&impl_->attach_ctx, req);
  v1::AttachWorkerResponse resp;
  if (!impl_->attach_stream->Read(&resp)) {
    return control_error(impl_->attach_stream->Finish(), "AttachWorker");
  }
  if (resp.abi_version() != dp::kAbiVersion) {
    return absl::FailedPreconditionError(absl::StrCat("the kvstore speaks data-plane ABI ", resp.abi_version(),
                                                      ", this worker ", dp::kAbiVersion));
  }
  worker_id_ = resp.worker_id();
  if (device_staging_ != nullptr && !resp.cuda_push()) {
    return absl::FailedPreconditionError("the kvstore attached this worker without its CUDA push");
  }

  // Pool: metadata read-only, blocks read-write.
  FREEKV_ASSIGN_OR_RETURN(pool_, SharedMemory::open(resp.pool_shm_name(), /*writable=*/true));
  if (pool_->size() < dp::kPoolHeaderBytes) return absl::FailedPreconditionError("pool segment too small");
  pool_hdr_ = reinterpret_cast<const dp::PoolHeader*>(pool_->data());
  const dp::PoolHeader& ph = *pool_hdr_;
  if (std::memcmp(ph.magic, dp::kPoolMagic, 8) != 0 || ph.abi_version != dp::kAbiVersion ||
      ph.ready.load(std::memory_order_acquire) != 1 || ph.session_entry_bytes != sizeof(dp::SessionEntry) ||
      ph.segment_bytes != pool_->size() || ph.blocks_offset % 4096 != 0 ||
      ph.blocks_offset + ph.block_count * ph.block_bytes > pool_->size() ||
      ph.session_table_offset + uint64_t(ph.max_sessions) * sizeof(dp::SessionEntry) > ph.free_list_offset) {
    return absl::FailedPreconditionError(absl::StrCat("/dev/shm/", resp.pool_shm_name(),
                                                      " is not a pool this worker can read (magic, version or layout)"));
  }
  FREEKV_RETURN_IF_ERROR(pool_->protect_read_only(0, ph.blocks_offset));
  pool_->advise_huge_pages();

  // Channel.
  FREEKV_ASSIGN_OR_RETURN(channel_, SharedMemory::open(resp.channel_shm_name(), /*writable=*/true));
  if (channel_->size() < dp::kChannelHeaderBytes) return absl::FailedPreconditionError("channel segment too small");
  ch_hdr_ = reinterpret_cast<dp::ChannelHeader*>(channel_->data());
  const dp::ChannelHeader& h = *ch_hdr_;
  const uint64_t size = channel_->size();
  auto fits = [&](uint64_t off, uint64_t bytes) { return off <= size && bytes <= size - off; };
  if (std::memcmp(h.magic, dp::kChannelMagic, 8) != 0 || h.abi_version != dp::kAbiVersion ||
      h.channel_bytes != size || h.staging_pairs < 1 ||
      !fits(h.request_ring_offset, dp::RequestRing::bytes(h.request_capacity)) ||
      !fits(h.completion_ring_offset, dp::CompletionRing::bytes(h.completion_capacity)) ||
      !fits(h.items_offset, uint64_t(h.staging_pairs) * h.max_recall_items * sizeof(dp::RecallItem)) ||
      !fits(h.token_arena_offset, h.token_arena_bytes) ||
      !fits(h.staging_offset, uint64_t(h.staging_pairs) * 2 * h.staging_buffer_bytes)) {
    return absl::FailedPreconditionError(absl::StrCat("/dev/shm/", resp.channel_shm_name(),
                                                      " is not a valid data-plane channel"));
  }
  n_pairs_ = h.staging_pairs;
  max_items_ = h.max_recall_items;
  buffer_bytes_ = h.staging_buffer_bytes;
  requests_ = dp::RequestRing::attach(channel_->data() + h.request_ring_offset, h.request_capacity);
  completions_ = dp::CompletionRing::attach(channel_->data() + h.completion_ring_offset, h.completion_capacity);
  pair_busy_.assign(n_pairs_, false);

  // The attach stream ends when the kvstore goes away (or on our destruction): wake any wait then.
  watcher_ = std::thread([this] {
    v1::AttachWorkerResponse m;
    while (impl_->attach_stream->Read(&m)) {
    }
    (void)impl_->attach_stream->Finish();
    kvstore_gone_.store(true);
    completions_.control()->data.notify();
    requests_.control()->space.notify();
  });
  return absl::OkStatus();
}

uint64_t KvstoreClient::pool_block_bytes() const { return pool_hdr_->block_bytes; }

// ---- control ----

absl::StatusOr<KvSessionInfo> KvstoreClient::open_session(const std::string& session_id, const KvSessionGeometry& g,
                                                          bool create_if_missing, bool ephemeral) {
  v1::OpenSessionRequest req;
  req.set_create_if_missing(create_if_missing);
  return open(session_id, g, ephemeral, &req);
}

absl::StatusOr<KvSessionInfo> KvstoreClient::create_session(const std::string& session_id, const KvSessionGeometry& g,
                                                            bool ephemeral) {
  v1::OpenSessionRequest req;
  req.set_must_create(true);
  return open(session_id, g, ephemeral, &req);
}

absl::StatusOr<KvSessionInfo> KvstoreClient::open(const std::string& session_id, const KvSessionGeometry& g,
                                                  bool ephemeral, v1::OpenSessionRequest* request) {
  v1::OpenSessionRequest& req = *request;
  req.set_session_id(session_id);
  geometry_to_proto(g, req.mutable_geometry());
  if (ephemeral) req.set_ephemeral_worker_id(worker_id_);
  v1::OpenSessionResponse resp;
  grpc::ClientContext ctx;
  set_deadline(&ctx);
  FREEKV_RETURN_IF_ERROR(control_error(impl_->stub->OpenSession(&ctx, req, &resp), "OpenSession"));
  const v1::SessionInfo& s = resp.session();
  KvSessionInfo info;
  info.id = s.session_id();
  FREEKV_ASSIGN_OR_RETURN(info.geometry, geometry_from_proto(s.geometry()));
  info.ref = SessionRef{s.slot(), s.generation(), s.epoch()};
  info.created = resp.created();
  info.n_tokens = s.n_tokens();
  info.committed_pages = s.committed_pages();
  info.max_pages_per_layer = s.max_pages_per_layer();
  return info;
}

absl::Status KvstoreClient::close_session(const std::string& session_id, uint64_t writer_epoch) {
  v1::CloseSessionRequest req;
  req.set_session_id(session_id);
  req.set_writer_epoch(writer_epoch);
  v1::CloseSessionResponse resp;
  grpc::ClientContext ctx;
  set_deadline(&ctx);
  return control_error(impl_->stub->CloseSession(&ctx, req, &resp), "CloseSession");
}

absl::StatusOr<KvSessionStats> KvstoreClient::session_stats(const std::string& session_id) {
  v1::GetSessionRequest req;
  req.set_session_id(session_id);
  v1::GetSessionResponse resp;
  grpc::ClientContext ctx;
  set_deadline(&ctx);
  FREEKV_RETURN_IF_ERROR(control_error(impl_->stub->GetSession(&ctx, req, &resp), "GetSession"));
  KvSessionStats st;
  st.n_tokens = resp.session().n_tokens();
  st.committed_pages = resp.session().committed_pages();
  st.bytes = resp.session().bytes();
  st.last_use_unix_ms = resp.session().last_use_unix_ms();
  for (const auto& l : resp.session().layers()) st.layers.push_back(KvLayerStats{l.pages(), l.bytes(), l.highest_page()});
  return st;
}

absl::StatusOr<KvPoolStats> KvstoreClient::pool_stats() {
  v1::GetPoolStatsResponse resp;
  grpc::ClientContext ctx;
  set_deadline(&ctx);
  FREEKV_RETURN_IF_ERROR(control_error(impl_->stub->GetPoolStats(&ctx, v1::GetPoolStatsRequest(), &resp), "GetPoolStats"));
  const v1::PoolStats& s = resp.stats();
  KvPoolStats p;
  p.blocks_total = s.blocks_total();
  p.blocks_used = s.blocks_used();
  p.blocks_free = s.blocks_free();
  p.blocks_data = s.blocks_data();
  p.blocks_metadata = s.blocks_metadata();
  p.blocks_pending = s.blocks_pending();
  p.block_bytes = s.block_bytes();
  p.sessions = s.sessions();
  p.workers = s.workers();
  p.bytes_recalled_total = s.bytes_recalled_total();
  p.recalls_total = s.recalls_total();
  p.recall_errors_total = s.recall_errors_total();
  p.recall_gbps_last_minute = s.recall_gbps_last_minute();
  p.pool_starts = s.pool_starts();
  return p;
}

// ---- data plane plumbing ----

absl::Status KvstoreClient::channel_state_error() const {
  if (kvstore_gone_.load()) return absl::UnavailableError("freekv-kvstore went away (the attach stream ended)");
  const uint32_t st = ch_hdr_->state.load(std::memory_order_acquire);
  if (st == dp::kChannelClosed) return absl::UnavailableError("the kvstore closed this worker's data-plane channel");
  if (st == dp::kChannelBroken) {
    return absl::InternalError("the kvstore stopped serving this worker's channel after a protocol error");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> KvstoreClient::send(dp::Request r) {
  r.seq = next_seq_++;
  const int64_t deadline = Doorbell::now_ns() + timeout_ns_;
  for (;;) {
    FREEKV_RETURN_IF_ERROR(channel_state_error());
    const RingResult rr = requests_.try_push(r);
    if (rr == RingResult::kOk) return r.seq;
    if (rr == RingResult::kCorrupt) return absl::InternalError("the request ring is corrupt");
    if (Doorbell::now_ns() > deadline) {
      return absl::DeadlineExceededError("the kvstore did not take a request within the timeout (ring full)");
    }
    requests_.control()->space.wait(
        [&] { return requests_.has_space() || kvstore_gone_.load(std::memory_order_relaxed); }, kWaitSliceNs, kSpinNs);
  }
}

absl::StatusOr<dp::Completion> KvstoreClient::next_completion(uint64_t seq, Ticket* ticket) {
  if (ticket != nullptr && !ticket->stash.empty()) {
    dp::Completion c = ticket->stash.front();
    ticket->stash.pop_front();
    return c;
  }
  const int64_t deadline = Doorbell::now_ns() + timeout_ns_;
  for (;;) {
    dp::Completion c;
    const RingResult rr = completions_.try_pop(&c);
    if (rr == RingResult::kOk) {
      if (c.seq == seq) return c;
      route_completion(c);
      continue;
    }
    if (rr == RingResult::kCorrupt) return absl::InternalError("the completion ring is corrupt");
    FREEKV_RETURN_IF_ERROR(channel_state_error());
    if (Doorbell::now_ns() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no answer from freekv-kvstore to request #", seq, " within ",
                                                      timeout_ns_ / 1000000, " ms"));
    }
    completions_.control()->data.wait(
        [&] {
          return completions_.has_data() || kvstore_gone_.load(std::memory_order_relaxed) ||
                 ch_hdr_->state.load(std::memory_order_relaxed) != dp::kChannelServing;
        },
        kWaitSliceNs, kSpinNs);
  }
}

void KvstoreClient::route_completion(const dp::Completion& c) {
  auto it = tickets_.find(c.seq);
  if (it == tickets_.end()) return;  // answers a request nobody waits for any more: dropped
  Ticket& t = it->second;
  if (!t.abandoned) {
    t.stash.push_back(c);
    return;
  }
  // A recall whose wait gave up: hand each buffer straight back, and free the pair once the kvstore
  // is done with it (its last buffer, or its final answer).
  const bool data = c.kind == uint32_t(dp::CompletionKind::kRecallData);
  if (data && c.pair == t.pair && c.buffer <= 1) {
    dp::Request r{};
    r.op = uint32_t(dp::Op::kRelease);
    r.pair = t.pair;
    r.flags = c.buffer;
    r.ticket = c.seq;
    if (!send(r).ok()) return;  // the channel is gone: the pair stays out of use
  }
  if (!data || (c.flags & dp::kLastBuffer) != 0) {
    pair_busy_[t.pair] = false;
    tickets_.erase(it);
  }
}

void KvstoreClient::poll_completions() {
  dp::Completion c;
  while (completions_.try_pop(&c) == RingResult::kOk) route_completion(c);
}

absl::StatusOr<dp::Completion> KvstoreClient::call(dp::Request r) {
  FREEKV_ASSIGN_OR_RETURN(uint64_t seq, send(r));
  FREEKV_ASSIGN_OR_RETURN(dp::Completion c, next_completion(seq, nullptr));
  if (c.kind == uint32_t(dp::CompletionKind::kError)) {
    c.message[dp::kMessageBytes - 1] = '\0';
    return absl::Status(absl::StatusCode(c.code), c.message);
  }
  if (c.kind != uint32_t(dp::CompletionKind::kDone)) {
    return absl::InternalError(absl::StrCat("unexpected completion kind ", c.kind, " for request #", seq));
  }
  return c;
}

uint8_t* KvstoreClient::staging(uint32_t pair, uint32_t buffer) const {
  return channel_->data() + ch_hdr_->staging_offset + (uint64_t(pair) * 2 + buffer) * buffer_bytes_;
}

const dp::SessionEntry* KvstoreClient::live_entry(SessionRef s) const {
  if (s.slot >= pool_hdr_->max_sessions) return nullptr;
  const auto* e = reinterpret_cast<const dp::SessionEntry*>(pool_->data() + pool_hdr_->session_table_offset) + s.slot;
  if (e->state.load(std::memory_order_acquire) != dp::kSessionLive || e->generation != s.generation) return nullptr;
  return e;
}

// ---- offload ----

// A request over pages [first_page, first_page + n) of one layer (allocate, commit, discard).
static absl::StatusOr<dp::Request> page_range_request(dp::Op op, const char* what, SessionRef s, int layer,
                                                      int64_t first_page, int n) {
  if (n < 1 || uint32_t(n) > dp::kMaxAllocPages) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": n must be 1..", dp::kMaxAllocPages));
  }
  dp::Request r{};
  r.op = uint32_t(op);
  r.session_slot = s.slot;
  r.session_generation = s.generation;
  r.session_epoch = s.epoch;
  r.layer = layer;
  r.first = first_page;
  r.count = uint32_t(n);
  return r;
}

absl::StatusOr<std::vector<uint8_t*>> KvstoreClient::pages_for_write(SessionRef s, int layer, int64_t first_page, int n) {
  FREEKV_ASSIGN_OR_RETURN(dp::Request r, page_range_request(dp::Op::kAlloc, "pages_for_write", s, layer, first_page, n));
  FREEKV_ASSIGN_OR_RETURN(dp::Completion c, call(r));
  if (c.n_blocks != uint32_t(n)) return absl::InternalError("allocation answered with the wrong number of blocks");
  std::vector<uint8_t*> out(static_cast<size_t>(n));
  const dp::PoolHeader& ph = *pool_hdr_;
  for (int i = 0; i < n; ++i) {
    const uint64_t off = c.block_offsets[i];
    if (off < ph.blocks_offset || (off - ph.blocks_offset) % ph.block_bytes != 0 ||
        off + ph.block_bytes > ph.blocks_offset + ph.block_count * ph.block_bytes) {
      return absl::InternalError("the kvstore answered with a block outside the pool");
    }
    out[size_t(i)] = pool_->data() + off;
  }
  return out;
}

absl::StatusOr<uint8_t*> KvstoreClient::page_for_write(SessionRef s, int layer, int64_t page) {
  FREEKV_ASSIGN_OR_RETURN(std::vector<uint8_t*> v, pages_for_write(s, layer, page, 1));
  return v[0];
}

absl::Status KvstoreClient::commit_pages(SessionRef s, int layer, int64_t first_page, int n) {
  FREEKV_ASSIGN_OR_RETURN(dp::Request r, page_range_request(dp::Op::kCommit, "commit_pages", s, layer, first_page, n));
  return call(r).status();
}

absl::Status KvstoreClient::discard_pages(SessionRef s, int layer, int64_t first_page, int n) {
  FREEKV_ASSIGN_OR_RETURN(dp::Request r, page_range_request(dp::Op::kDiscard, "discard_pages", s, layer, first_page, n));
  return call(r).status();
}

absl::Status KvstoreClient::truncate(SessionRef s, uint64_t keep_tokens) {
  dp::Request r{};
  r.op = uint32_t(dp::Op::kTruncate);
  r.session_slot = s.slot;
  r.session_generation = s.generation;
  r.session_epoch = s.epoch;
  r.first = int64_t(keep_tokens);
  return call(r).status();
}

// ---- tokens ----

absl::Status KvstoreClient::append_tokens(SessionRef s, const int32_t* ids, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError("append_tokens: negative count");
  const int64_t per_call = int64_t(ch_hdr_->token_arena_bytes / sizeof(int32_t));
  auto* arena = reinterpret_cast<int32_t*>(channel_->data() + ch_hdr_->token_arena_offset);
  for (int64_t done = 0; done < n;) {
    const int64_t k = std::min(per_call, n - done);
    std::memcpy(arena, ids + done, size_t(k) * sizeof(int32_t));
    dp::Request r{};
    r.op = uint32_t(dp::Op::kAppendTokens);
    r.session_slot = s.slot;
    r.session_generation = s.generation;
  r.session_epoch = s.epoch;
    r.count = uint32_t(k);
    FREEKV_RETURN_IF_ERROR(call(r).status());
    done += k;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> KvstoreClient::tokens(SessionRef s) const {
  const dp::SessionEntry* e = live_entry(s);
  if (e == nullptr) return absl::NotFoundError("tokens: the session is closed or unknown");
  const dp::PoolHeader& ph = *pool_hdr_;
  const uint64_t tpb = dp::tokens_per_block(ph.block_bytes);
  const uint64_t n = std::min<uint64_t>(e->n_tokens.load(std::memory_order_acquire), dp::max_tokens(ph.block_bytes));
  std::vector<int32_t> out(n);
  for (uint64_t t = 0; t < n;) {
    const uint32_t v = e->token_blocks[t / tpb].load(std::memory_order_acquire);
    if (v == 0 || v - 1 >= ph.block_count) return absl::InternalError("tokens: a token block is missing");
    const uint64_t off = t % tpb, run = std::min(n - t, tpb - off);
    const auto* src = reinterpret_cast<const int32_t*>(pool_->data() + ph.blocks_offset + uint64_t(v - 1) * ph.block_bytes);
    std::memcpy(out.data() + t, src + off, run * sizeof(int32_t));
    t += run;
  }
  if (live_entry(s) == nullptr) return absl::NotFoundError("tokens: the session was closed while reading");
  return out;
}

const uint8_t* KvstoreClient::committed_page(SessionRef s, int layer, int64_t page) const {
  const dp::SessionEntry* e = live_entry(s);
  if (e == nullptr || layer < 0 || uint32_t(layer) >= e->n_layers || page < 0) return nullptr;
  const dp::PoolHeader& ph = *pool_hdr_;
  if (uint64_t(page) >= dp::max_pages_per_layer(ph.block_bytes, e->n_layers)) return nullptr;
  const uint64_t epb = dp::entries_per_index_block(ph.block_bytes);
  const uint64_t g = uint64_t(page) * e->n_layers + uint32_t(layer);
  const uint32_t v = e->index_blocks[g / epb].load(std::memory_order_acquire);
  if (v == 0 || v - 1 >= ph.block_count) return nullptr;
  const uint8_t* blocks = pool_->data() + ph.blocks_offset;
  const auto* entries = reinterpret_cast<const std::atomic<uint32_t>*>(blocks + uint64_t(v - 1) * ph.block_bytes);
  const uint32_t x = entries[g % epb].load(std::memory_order_acquire);
  if (x == 0 || x - 1 >= ph.block_count) return nullptr;
  return blocks + uint64_t(x - 1) * ph.block_bytes;
}

// ---- recall ----

uint32_t KvstoreClient::free_pairs() {
  poll_completions();  // given-up recalls that have ended free their pairs here
  return uint32_t(std::count(pair_busy_.begin(), pair_busy_.end(), false));
}

absl::StatusOr<uint64_t> KvstoreClient::post_recall(SessionRef s, int layer, const std::vector<RecallItem>& items,
                                                    RecallMode mode, RecallSource source) {
  if (items.size() > max_items_) {
    return absl::InvalidArgumentError(absl::StrCat("recall of ", items.size(), " items exceeds this channel's limit of ",
                                                   max_items_, " (Options::max_recall_items)"));
  }
  free_pairs();  // reclaims pairs of abandoned recalls that have ended
  const uint32_t pair = uint32_t(std::find(pair_busy_.begin(), pair_busy_.end(), false) - pair_busy_.begin());
  const dp::SessionEntry* e = live_entry(s);
  if (e == nullptr) return absl::NotFoundError("post_recall: the session is closed or unknown");
  const uint64_t chunk_bytes =
      source == RecallSource::kKeyStats ? e->geometry().head_key_stats_bytes() : e->geometry().chunk_bytes();
  if (pair == n_pairs_) {
    return absl::FailedPreconditionError(absl::StrCat("all ", n_pairs_,
                                                      " staging pairs carry a recall; wait_recall one first"));
  }
  auto* dst = reinterpret_cast<dp::RecallItem*>(channel_->data() + ch_hdr_->items_offset) + uint64_t(pair) * max_items_;
  std::copy(items.begin(), items.end(), dst);
  dp::Request r{};
  r.op = uint32_t(dp::Op::kRecall);
  r.session_slot = s.slot;
  r.session_generation = s.generation;
  r.session_epoch = s.epoch;
  r.layer = layer;
  r.pair = pair;
  r.count = uint32_t(items.size());
  r.flags = (mode == RecallMode::kSingleBuffered ? dp::kRecallSingleBuffer : 0) |
            (source == RecallSource::kKeyStats ? dp::kRecallKeyStats : 0);
  FREEKV_ASSIGN_OR_RETURN(uint64_t seq, send(r));
  pair_busy_[pair] = true;
  Ticket& t = tickets_[seq];
  t.pair = pair;
  t.n_items = uint32_t(items.size());
  t.chunk_bytes = chunk_bytes;
  return seq;
}

absl::Status KvstoreClient::wait_recall(uint64_t ticket,
                                        const std::function<void(int64_t item, const uint8_t* chunk)>& consume) {
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown recall ticket ", ticket, " (never posted, or waited already)"));
  }
  Ticket& t = it->second;
  if (t.abandoned) return absl::InvalidArgumentError(absl::StrCat("recall ticket ", ticket, " was given up already"));
  const uint32_t pair = t.pair;
  auto finish = [&](absl::Status s, bool pair_reusable) {
    if (pair_reusable) pair_busy_[pair] = false;  // else the kvstore may still write into it: keep it out of use
    tickets_.erase(ticket);
    return s;
  };
  for (;;) {
    auto next = next_completion(ticket, &t);
    if (!next.ok()) {
      if (!absl::IsDeadlineExceeded(next.status())) return finish(next.status(), false);
      // Timed out: the kvstore may still be gathering into the pair. Give the recall up; its pair comes
      // back when its remaining completions arrive (route_completion), so nothing leaks.
      t.abandoned = true;
      for (const dp::Completion& c : std::deque<dp::Completion>(std::move(t.stash))) route_completion(c);
      return next.status();
    }
    dp::Completion& c = *next;
    switch (dp::CompletionKind(c.kind)) {
      case dp::CompletionKind::kDone:
        return finish(absl::OkStatus(), true);
      case dp::CompletionKind::kError:
        c.message[dp::kMessageBytes - 1] = '\0';
        return finish(absl::Status(absl::StatusCode(c.code), c.message), true);
      case dp::CompletionKind::kRecallData: {
        if (c.pair != pair || c.buffer > 1 || c.first_item != t.next_item || c.n_items == 0 ||
            c.n_items > t.n_items - t.next_item) {
          return finish(absl::InternalError("the kvstore handed over a staging buffer that does not match the recall"),
                        false);
        }
        if (t.chunk_bytes == 0 || uint64_t(c.n_items) * t.chunk_bytes > buffer_bytes_) {
          return finish(absl::InternalError("the kvstore handed over more chunks than a staging buffer holds"), false);
        }
        const uint8_t* base = device_staging_ != nullptr ? device_staging_->buffer(pair, c.buffer) : staging(pair, c.buffer);
        for (uint32_t i = 0; i < c.n_items; ++i) {
          consume(int64_t(c.first_item + i), base + uint64_t(i) * t.chunk_bytes);
        }
        dp::Request r{};
        r.op = uint32_t(dp::Op::kRelease);
        r.pair = pair;
        r.flags = c.buffer;
        r.ticket = ticket;
        auto sent = send(r);
        if (!sent.ok()) return finish(sent.status(), false);
        t.next_item += c.n_items;
        if (c.flags & dp::kLastBuffer) {
          if (t.next_item != t.n_items) return finish(absl::InternalError("recall ended early"), false);
          return finish(absl::OkStatus(), true);
        }
        break;
      }
      default:
        return finish(absl::InternalError(absl::StrCat("unexpected completion kind ", c.kind)), false);
    }
  }
}

}  // namespace freekv
