#include "kvstore/channel.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "common/units.h"
#include "kvstore/gather_copy.h"

namespace freekv::kvstore {

namespace {

constexpr uint64_t kAlign = 4096;
constexpr int64_t kWaitSliceNs = 100'000'000;  // re-check stop flags this often while sleeping
// How long the channel thread spins before sleeping on the futex: long while the worker is active (a
// futex wake-up costs tens of microseconds, more on a VM, which is the size of a whole buffer's copy),
// short when the channel has been idle for a while.
constexpr int64_t kActiveSpinNs = 300'000;
constexpr int64_t kIdleSpinNs = 20'000;
constexpr int64_t kActiveWindowNs = 5'000'000;
uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

struct ChannelLayout {
  uint64_t request_ring, completion_ring, items, token_arena, staging, total;
};

ChannelLayout layout_of(const ChannelConfig& c) {
  ChannelLayout l;
  uint64_t off = dp::kChannelHeaderBytes;
  l.request_ring = off;
  off = round_up(off + dp::RequestRing::bytes(c.request_capacity), kAlign);
  l.completion_ring = off;
  off = round_up(off + dp::CompletionRing::bytes(c.completion_capacity), kAlign);
  l.items = off;
  off = round_up(off + uint64_t(c.staging_pairs) * c.max_recall_items * sizeof(dp::RecallItem), kAlign);
  l.token_arena = off;
  off = round_up(off + c.token_arena_bytes, kAlign);
  l.staging = off;
  off += uint64_t(c.staging_pairs) * 2 * c.staging_buffer_bytes;
  l.total = off;
  return l;
}

bool power_of_two(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

uint64_t Channel::segment_bytes(const ChannelConfig& c) { return layout_of(c).total; }

absl::StatusOr<std::unique_ptr<Channel>> Channel::create(Pool* pool, RecallStats* stats, uint32_t id,
                                                         const std::string& worker_name, const std::string& shm_name,
                                                         const ChannelConfig& config, const CudaPushSpec* cuda) {
  if (config.staging_pairs < 1 || config.max_recall_items < 1 || config.staging_buffer_bytes < kAlign ||
      config.staging_buffer_bytes % kAlign != 0 || !power_of_two(config.request_capacity) ||
      !power_of_two(config.completion_capacity) || config.token_arena_bytes < 4 || config.token_arena_bytes % 4 != 0) {
    return absl::InvalidArgumentError("bad channel configuration");
  }
  std::unique_ptr<Channel> ch(new Channel());
  ch->pool_ = pool;
  ch->stats_ = stats;
  ch->id_ = id;
  ch->worker_name_ = worker_name;
  ch->config_ = config;
  const ChannelLayout l = layout_of(config);
  FREEKV_ASSIGN_OR_RETURN(ch->shm_, SharedMemory::create(shm_name, l.total));
  auto* h = reinterpret_cast<dp::ChannelHeader*>(ch->shm_->data());
  std::memcpy(h->magic, dp::kChannelMagic, sizeof(h->magic));
  h->abi_version = dp::kAbiVersion;
  h->worker_id = id;
  h->channel_bytes = l.total;
  h->request_capacity = config.request_capacity;
  h->completion_capacity = config.completion_capacity;
  h->staging_pairs = config.staging_pairs;
  h->max_recall_items = config.max_recall_items;
  h->staging_buffer_bytes = config.staging_buffer_bytes;
  h->token_arena_bytes = config.token_arena_bytes;
  h->request_ring_offset = l.request_ring;
  h->completion_ring_offset = l.completion_ring;
  h->items_offset = l.items;
  h->token_arena_offset = l.token_arena;
  h->staging_offset = l.staging;
  ch->hdr_ = h;
  ch->requests_ = dp::RequestRing::create(ch->shm_->data() + l.request_ring, config.request_capacity);
  ch->completions_ = dp::CompletionRing::create(ch->shm_->data() + l.completion_ring, config.completion_capacity);
  if (cuda != nullptr) {
    FREEKV_ASSIGN_OR_RETURN(ch->pusher_, make_cuda_pusher(*cuda, config.staging_pairs, config.staging_buffer_bytes,
                                                          pool->base(), pool->segment_bytes()));
  }
  if (config.gather_threads > 1) ch->gather_pool_ = std::make_unique<ThreadPool>(config.gather_threads);
  ch->pairs_.resize(config.staging_pairs);
  h->state.store(dp::kChannelServing, std::memory_order_release);
  ch->thread_ = std::thread([c = ch.get()] { c->run(); });
  LOG(INFO) << "worker " << id << " ('" << worker_name << "') attached: channel /dev/shm/" << shm_name << " ("
            << format_size(l.total) << ", " << config.staging_pairs << " staging pairs of 2 × "
            << format_size(config.staging_buffer_bytes) << (cuda != nullptr ? ", CUDA push" : "") << ")";
  return ch;
}

Channel::~Channel() {
  stop_.store(true);
  requests_.control()->data.notify();
  completions_.control()->space.notify();
  if (thread_.joinable()) thread_.join();
  pusher_.reset();
  const uint64_t freed = pool_->release_owner(id_);
  if (!broken_.load()) hdr_->state.store(dp::kChannelClosed, std::memory_order_release);
  completions_.control()->data.notify();
  SharedMemory::unlink(shm_->name()).IgnoreError();
  LOG(INFO) << "worker " << id_ << " ('" << worker_name_ << "') detached; " << freed
            << " uncommitted blocks returned to the pool";
}

uint8_t* Channel::staging(uint32_t pair, uint32_t buffer) const {
  return shm_->data() + hdr_->staging_offset + (uint64_t(pair) * 2 + buffer) * config_.staging_buffer_bytes;
}

dp::RecallItem* Channel::items(uint32_t pair) const {
  return reinterpret_cast<dp::RecallItem*>(shm_->data() + hdr_->items_offset) + uint64_t(pair) * config_.max_recall_items;
}

void Channel::run() {
  int64_t last_active = Doorbell::now_ns();
  while (!stop_.load(std::memory_order_relaxed)) {
    bool progressed = false;
    for (int i = 0; i < 256; ++i) {
      dp::Request r;
      const RingResult rr = requests_.try_pop(&r);
      if (rr == RingResult::kEmpty) break;
      if (rr == RingResult::kCorrupt) {
        protocol_error("the request ring's tail is inconsistent with its head");
        return;
      }
      handle(r);
      progressed = true;
      if (broken_.load() || stop_.load(std::memory_order_relaxed)) return;
    }
    if (!ready_.empty()) {
      const uint32_t p = ready_.front();
      ready_.pop_front();
      pairs_[p].job->queued = false;
      step(p);
      progressed = true;
      if (broken_.load()) return;
    }
    if (progressed) {
      last_active = Doorbell::now_ns();
    } else {
      const bool active = Doorbell::now_ns() - last_active < kActiveWindowNs;
      requests_.control()->data.wait([&] { return stop_.load(std::memory_order_relaxed) || requests_.has_data(); },
                                     kWaitSliceNs, active ? kActiveSpinNs : kIdleSpinNs);
    }
  }
}

void Channel::protocol_error(const std::string& why) {
  LOG(WARNING) << "worker " << id_ << " ('" << worker_name_ << "'): data-plane protocol error: " << why
               << "; the channel stops serving (other workers are not affected)";
  broken_.store(true);
  hdr_->state.store(dp::kChannelBroken, std::memory_order_release);
  completions_.control()->data.notify();
}

bool Channel::post(const dp::Completion& c) {
  for (;;) {
    const RingResult rr = completions_.try_push(c);
    if (rr == RingResult::kOk) return true;
    if (rr == RingResult::kCorrupt) {
      protocol_error("the completion ring's head is inconsistent with its tail");
      return false;
    }
    // Full: the worker is not consuming; wait (only this channel stalls).
    completions_.control()->space.wait(
        [&] { return stop_.load(std::memory_order_relaxed) || completions_.has_space(); }, kWaitSliceNs);
    if (stop_.load()) return false;
  }
}

void Channel::post_done(uint64_t seq) {
  dp::Completion c{};
  c.seq = seq;
  c.kind = uint32_t(dp::CompletionKind::kDone);
  post(c);
}

void Channel::post_error(uint64_t seq, const absl::Status& s) {
  dp::Completion c{};
  c.seq = seq;
  c.kind = uint32_t(dp::CompletionKind::kError);
  c.code = int32_t(s.code());
  const std::string msg(s.message());
  const size_t n = std::min<size_t>(msg.size(), dp::kMessageBytes - 1);
  std::memcpy(c.message, msg.data(), n);
  c.message[n] = '\0';
  post(c);
}

void Channel::handle(const dp::Request& r) {
  const SessionRef ref{r.session_slot, r.session_generation, r.session_epoch};
  switch (dp::Op(r.op)) {
    case dp::Op::kAlloc: {
      auto blocks = pool_->allocate(id_, ref, r.layer, r.first, r.count);
      if (!blocks.ok()) return post_error(r.seq, blocks.status());
      dp::Completion c{};
      c.seq = r.seq;
      c.kind = uint32_t(dp::CompletionKind::kDone);
      c.n_blocks = uint32_t(blocks->size());
      for (size_t i = 0; i < blocks->size(); ++i) {
        c.block_offsets[i] = pool_->blocks_offset() + uint64_t((*blocks)[i]) * pool_->block_bytes();
      }
      post(c);
      return;
    }
    case dp::Op::kCommit: {
      absl::Status s = pool_->commit(id_, ref, r.layer, r.first, r.count);
      return s.ok() ? post_done(r.seq) : post_error(r.seq, s);
    }
    case dp::Op::kDiscard: {
      absl::Status s = pool_->discard(id_, ref, r.layer, r.first, r.count);
      return s.ok() ? post_done(r.seq) : post_error(r.seq, s);
    }
    case dp::Op::kAppendTokens: {
      if (uint64_t(r.count) * sizeof(int32_t) > config_.token_arena_bytes) {
        return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat(
                                     r.count, " token ids do not fit the token arena (",
                                     config_.token_arena_bytes / sizeof(int32_t), "); split the append")));
      }
      std::vector<int32_t> ids(r.count);
      if (r.count > 0) std::memcpy(ids.data(), shm_->data() + hdr_->token_arena_offset, ids.size() * sizeof(int32_t));
      absl::Status s = pool_->append_tokens(ref, ids.data(), ids.size());
      return s.ok() ? post_done(r.seq) : post_error(r.seq, s);
    }
    case dp::Op::kRecall:
      return accept_recall(r);
    case dp::Op::kRelease:
      return release(r);
    case dp::Op::kTruncate: {
      if (r.first < 0) return post_error(r.seq, absl::InvalidArgumentError("truncate: negative token count"));
      absl::Status s = pool_->truncate(ref, uint64_t(r.first));
      return s.ok() ? post_done(r.seq) : post_error(r.seq, s);
    }
  }
  post_error(r.seq, absl::InvalidArgumentError(absl::StrCat("unknown data-plane op ", r.op)));
}

void Channel::accept_recall(const dp::Request& r) {
  if (r.pair >= config_.staging_pairs) {
    return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat("staging pair ", r.pair, " is out of range (",
                                                                     config_.staging_pairs, " pairs)")));
  }
  PairState& ps = pairs_[r.pair];
  if (ps.job != nullptr) {
    return post_error(r.seq, absl::FailedPreconditionError(absl::StrCat(
                                 "staging pair ", r.pair, " already carries recall #", ps.job->seq,
                                 "; wait for it before reusing the pair")));
  }
  if (r.count > config_.max_recall_items) {
    return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat("recall of ", r.count, " items exceeds the limit of ",
                                                                     config_.max_recall_items, " per recall")));
  }
  auto job = std::make_unique<GatherJob>();
  job->seq = r.seq;
  job->ref = SessionRef{r.session_slot, r.session_generation, r.session_epoch};
  job->single_buffer = (r.flags & dp::kRecallSingleBuffer) != 0;
  const bool key_stats = (r.flags & dp::kRecallKeyStats) != 0;
  job->items.resize(r.count);
  if (r.count > 0) std::memcpy(job->items.data(), items(r.pair), job->items.size() * sizeof(dp::RecallItem));
  {
    Pool::ReadLock lock(pool_);
    auto e = pool_->resolve_locked(job->ref);
    if (!e.ok()) {
      stats_->add_error();
      return post_error(r.seq, e.status());
    }
    const dp::SessionEntry& entry = **e;
    if (r.layer < 0 || uint32_t(r.layer) >= entry.n_layers) {
      stats_->add_error();
      return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat("recall layer ", r.layer,
                                                                       " is out of range (session has ",
                                                                       entry.n_layers, " layers)")));
    }
    job->layer = uint32_t(r.layer);
    const dp::SessionGeometry g = entry.geometry();
    // A chunk item is at kv_head·chunk in the block; a key-statistics item after the page's KV.
    job->chunk_bytes = key_stats ? g.head_key_stats_bytes() : g.chunk_bytes();
    job->source_offset = key_stats ? g.page_bytes() : 0;
    if (job->chunk_bytes > config_.staging_buffer_bytes) {
      stats_->add_error();
      return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat(
                                   "a chunk of this session (", format_size(job->chunk_bytes),
                                   ") does not fit a staging buffer (", format_size(config_.staging_buffer_bytes),
                                   "); attach with a larger staging_buffer_bytes")));
    }
    job->chunks_per_buffer = uint32_t(config_.staging_buffer_bytes / job->chunk_bytes);
    const uint64_t max_pages = dp::max_pages_per_layer(pool_->block_bytes(), entry.n_layers);
    for (size_t i = 0; i < job->items.size(); ++i) {
      const dp::RecallItem& it = job->items[i];
      std::string why;
      if (it.kv_head >= entry.n_kv_heads) {
        why = absl::StrCat("kv_head ", it.kv_head, " is out of range (session has ", entry.n_kv_heads, " KV heads)");
      } else if (it.page >= max_pages) {
        why = absl::StrCat("page ", it.page, " is beyond the page table (at most ", max_pages, " pages per layer)");
      } else if (pool_->committed_block_locked(entry, job->layer, it.page) < 0) {
        why = absl::StrCat("page ", it.page, " of layer ", job->layer, " is not committed");
      }
      if (!why.empty()) {
        stats_->add_error();
        return post_error(r.seq, absl::InvalidArgumentError(absl::StrCat("recall item ", i, ": ", why)));
      }
    }
    pool_->touch(entry);
  }
  stats_->add_recall();
  if (job->items.empty()) return post_done(r.seq);
  ps.job = std::move(job);
  maybe_queue(r.pair);
}

void Channel::maybe_queue(uint32_t pair) {
  PairState& ps = pairs_[pair];
  if (ps.job == nullptr || ps.job->queued || ps.held[ps.job->wanted_buffer()]) return;
  ps.job->queued = true;
  ready_.push_back(pair);
}

void Channel::release(const dp::Request& r) {
  const uint32_t buffer = r.flags;
  if (r.pair >= config_.staging_pairs || buffer > 1 || !pairs_[r.pair].held[buffer]) {
    if (bad_releases_++ < 10) {
      LOG(WARNING) << "worker " << id_ << ": ignoring release of staging buffer (" << r.pair << ", " << buffer
                   << ") that it does not hold";
    }
    return;
  }
  pairs_[r.pair].held[buffer] = false;
  maybe_queue(r.pair);
}

void Channel::step(uint32_t pair) {
  PairState& ps = pairs_[pair];
  GatherJob& j = *ps.job;
  const uint32_t b = j.wanted_buffer();
  if (ps.held[b]) return;  // parked until the worker releases it
  const int64_t t0 = Doorbell::now_ns();
  const uint32_t n = std::min<uint32_t>(j.chunks_per_buffer, uint32_t(j.items.size()) - j.next_item);
  uint8_t* dst = staging(pair, b);
  const uint64_t chunk = j.chunk_bytes;
  {
    Pool::ReadLock lock(pool_);
    auto e = pool_->resolve_locked(j.ref);
    std::vector<const uint8_t*> src(n);
    absl::Status failed;
    if (!e.ok()) {
      failed = absl::NotFoundError(absl::StrCat("the session was closed during recall #", j.seq));
    } else {
      for (uint32_t i = 0; i < n; ++i) {
        const dp::RecallItem& it = j.items[j.next_item + i];
        const int64_t blk = pool_->committed_block_locked(**e, j.layer, it.page);
        if (blk < 0) {
          failed = absl::NotFoundError(absl::StrCat("page ", it.page, " of layer ", j.layer,
                                                    " disappeared during recall #", j.seq));
          break;
        }
        src[i] = pool_->block(uint32_t(blk)) + j.source_offset + uint64_t(it.kv_head) * chunk;
      }
    }
    // CUDA: one gather kernel reads the chunks straight from the pool into the worker's device buffer,
    // and returns when done, so the lock covers the reads (cuda_push.h).
    if (failed.ok() && pusher_ != nullptr) failed = pusher_->push_chunks(pair, b, src.data(), n, chunk);
    if (!failed.ok()) {
      stats_->add_error();
      post_error(j.seq, failed);
      ps.job.reset();
      return;
    }
    if (pusher_ == nullptr) {
      // Chunks sit at random places in the pool: start on the next chunk's pages before copying this
      // one, so its TLB walks and first DRAM fetches overlap the copy (about +25% on random 16 KiB chunks).
      auto copy_range = [&](int64_t a, int64_t z) {
        for (int64_t i = a; i < z; ++i) {
          if (i + 1 < z) prefetch_chunk(src[size_t(i + 1)], chunk);
          copy_chunk(dst + uint64_t(i) * chunk, src[size_t(i)], chunk);
        }
      };
      if (gather_pool_ != nullptr && n > 1) {
        gather_pool_->parallel_for(n, [&](int64_t a, int64_t z, int) { copy_range(a, z); });
      } else {
        copy_range(0, n);
      }
    }
  }
  ps.held[b] = true;
  dp::Completion c{};
  c.seq = j.seq;
  c.kind = uint32_t(dp::CompletionKind::kRecallData);
  c.pair = pair;
  c.buffer = b;
  c.first_item = j.next_item;
  c.n_items = n;
  j.next_item += n;
  const bool last = j.next_item == j.items.size();
  c.flags = last ? dp::kLastBuffer : 0;
  if (!j.single_buffer) j.next_buffer ^= 1;
  stats_->add_buffer(uint64_t(n) * chunk, n, uint64_t(Doorbell::now_ns() - t0));
  if (last) {
    ps.job.reset();
  } else {
    maybe_queue(pair);
  }
  post(c);
}

}  // namespace freekv::kvstore
