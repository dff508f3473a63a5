// Fuzz target: the data-plane requests a worker posts into its shared-memory ring, as a buggy or hostile
// worker might post them. An in-process freekv-kvstore serves a well-behaved worker that holds a session
// with pages and token ids; per input a second worker attaches, opens its own session, and the input
// becomes up to 24 request records pushed straight into that worker's ring (records whose first byte is
// even are aimed at its real session, so their operation, layer, pages, counts and flags are what
// varies). The kvstore must consume them without hanging, and afterwards the well-behaved worker's
// session must read back exactly as written, the hostile worker's blocks must return when it detaches,
// and the kvstore must keep serving.
#include <dirent.h>
#include <glog/logging.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common/shm.h"
#include "common/spsc_ring.h"
#include "kvstore/server.h"
#include "worker/kv/kvstore_client.h"

namespace {

using freekv::KvstoreClient;
namespace dp = freekv::dp;

const dp::SessionGeometry kGeo{2, 2, 16, 8, freekv::DType::kBF16};
constexpr int kPages = 3;
constexpr size_t kMaxRecords = 24;  // fewer than the completion ring holds: the kvstore never waits on us

void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_dataplane_requests: %s\n", what.c_str());
  std::abort();
}

uint8_t page_byte(int layer, int64_t page) { return uint8_t(17 + layer * 31 + page * 7); }

std::unique_ptr<KvstoreClient> attach(const std::string& socket) {
  KvstoreClient::Options o;
  o.worker_name = "fuzz";
  o.staging_pairs = 2;
  o.staging_buffer_bytes = 16 << 10;
  o.timeout_ms = 5000;
  auto c = KvstoreClient::connect(socket, o);
  if (!c.ok()) fail("cannot attach: " + std::string(c.status().message()));
  return std::move(*c);
}

// Pages [0, kPages) of both layers filled with page_byte(), committed, and `n` token ids.
void write_session(KvstoreClient* c, dp::SessionRef ref, int n_ids) {
  for (int l = 0; l < int(kGeo.n_layers); ++l) {
    for (int64_t p = 0; p < kPages; ++p) {
      auto page = c->page_for_write(ref, l, p);
      if (!page.ok()) fail("cannot write a page");
      std::memset(*page, page_byte(l, p), kGeo.page_bytes());
      if (!c->commit_page(ref, l, p).ok()) fail("cannot commit a page");
    }
  }
  std::vector<int32_t> ids(size_t(n_ids), 5);
  if (!c->append_tokens(ref, ids.data(), n_ids).ok()) fail("cannot append token ids");
}

struct Kvstore {
  std::unique_ptr<freekv::kvstore::KvstoreServer> server;
  std::unique_ptr<KvstoreClient> good;
  dp::SessionRef good_ref;
  std::string socket;
};

Kvstore& kvstore() {
  static Kvstore* k = [] {
    FLAGS_minloglevel = google::GLOG_FATAL;  // every refused record is logged: thousands of lines otherwise
    auto* out = new Kvstore;
    freekv::kvstore::ServerOptions o;
    o.pool.name = "freekv-fuzz-dp-" + std::to_string(getpid());
    o.pool.pool_bytes = 4 << 20;
    o.pool.block_bytes = 16 << 10;
    o.pool.max_sessions = 8;
    o.pool.mlock = false;
    o.cuda_register = false;
    out->socket = "/tmp/" + o.pool.name + ".sock";
    o.listen = "unix:" + out->socket;
    freekv::SharedMemory::unlink(o.pool.name).IgnoreError();
    auto server = freekv::kvstore::KvstoreServer::start(o);
    if (!server.ok()) fail("cannot start the kvstore: " + std::string(server.status().message()));
    out->server = std::move(*server);
    out->good = attach(out->socket);
    auto s = out->good->open_session("good", kGeo, true);
    if (!s.ok()) fail("cannot open the good session");
    out->good_ref = s->ref;
    write_session(out->good.get(), s->ref, 40);
    // At exit: detach the good worker and stop the kvstore (which removes every channel segment), then
    // remove the pool, so a run leaves nothing in /dev/shm.
    std::atexit([] {
      Kvstore& k = kvstore();
      const std::string pool = k.server->pool()->name();
      k.good.reset();
      k.server.reset();
      freekv::SharedMemory::unlink(pool).IgnoreError();
    });
    return out;
  }();
  return *k;
}

// The channel segment of attached worker `id`: /dev/shm/<pool>.ch<id>.<suffix>.
std::string channel_of(const std::string& pool, uint32_t id) {
  const std::string prefix = pool + ".ch" + std::to_string(id) + ".";
  std::string found;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) {
      if (std::string(e->d_name).rfind(prefix, 0) == 0) found = e->d_name;
    }
    closedir(d);
  }
  return found;
}

void check_good_session(Kvstore& k) {
  auto ids = k.good->tokens(k.good_ref);
  if (!ids.ok() || ids->size() != 40) fail("the good session's token ids changed");
  for (int l = 0; l < int(kGeo.n_layers); ++l) {
    for (int64_t p = 0; p < kPages; ++p) {
      const uint8_t* page = k.good->committed_page(k.good_ref, l, p);
      if (page == nullptr) fail("a page of the good session is gone");
      for (uint64_t b = 0; b < kGeo.page_bytes(); ++b) {
        if (page[b] != page_byte(l, p)) fail("a page of the good session changed");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Kvstore& k = kvstore();
  const uint64_t data_blocks_before = k.server->pool()->counters().blocks_data;
  {
    auto bad = attach(k.socket);
    auto s = bad->open_session("bad", kGeo, true);
    if (!s.ok()) fail("cannot open the hostile worker's session");
    const std::string channel = channel_of(k.server->pool()->name(), bad->worker_id());
    if (channel.empty()) fail("cannot find the hostile worker's channel");
    auto shm = freekv::SharedMemory::open(channel, true);
    if (!shm.ok()) fail("cannot map the hostile worker's channel");
    auto* h = reinterpret_cast<dp::ChannelHeader*>((*shm)->data());
    auto ring = freekv::SpscRing<dp::Request>::attach((*shm)->data() + h->request_ring_offset, h->request_capacity);
    size_t pushed = 0;
    for (size_t i = 0; i + sizeof(dp::Request) <= size && pushed < kMaxRecords; i += sizeof(dp::Request), ++pushed) {
      dp::Request r;
      std::memcpy(&r, data + i, sizeof r);
      if (data[i] % 2 == 0) {  // aimed at its real session
        r.session_slot = s->ref.slot;
        r.session_generation = s->ref.generation;
        r.session_epoch = s->ref.epoch;
      }
      if (ring.try_push(r) != freekv::RingResult::kOk) break;
    }
    // The kvstore takes every record (or gives up on the channel) promptly.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ring.control()->head.load() < ring.control()->tail.load() && h->state.load() == dp::kChannelServing) {
      if (std::chrono::steady_clock::now() > until) fail("the kvstore stopped consuming a hostile worker's requests");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!bad->close_session("bad").ok()) fail("the hostile worker's session cannot be closed");
  }
  // Detached: its pending blocks come back; the good session is as it was, and is still served.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (k.server->pool()->counters().blocks_pending != 0) {
    if (std::chrono::steady_clock::now() > until) fail("a detached worker's blocks did not come back");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (k.server->pool()->counters().blocks_data != data_blocks_before) fail("blocks of the good session changed");
  check_good_session(k);
  return 0;
}
