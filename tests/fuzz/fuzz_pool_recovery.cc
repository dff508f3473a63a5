// Fuzz target: a pool segment left damaged (by a crash mid-write, a disk-backed /dev/shm gone wrong or a
// misbehaving process), reattached as a restarting freekv-kvstore does. A pool is made holding two
// sessions with pages and token ids; the input is a list of (offset, byte) patches applied to its
// metadata — the header, the session table and the first blocks, where page tables and token blocks
// live — and the pool is opened again. Opening must refuse with a message or repair; what it keeps must
// hold together: every listed session answers get_session, the block counters add up to the pool, and a
// kept session can be written and closed again.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <glog/logging.h>

#include "common/shm.h"
#include "kvstore/pool.h"

namespace {

using freekv::kvstore::Pool;
using freekv::kvstore::PoolOptions;

constexpr uint64_t kBlock = 16 << 10;
const freekv::dp::SessionGeometry kGeo{2, 2, 16, 8, freekv::DType::kBF16};

void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_pool_recovery: %s\n", what.c_str());
  std::abort();
}

PoolOptions options() {
  PoolOptions o;
  o.name = "freekv-fuzz-pool-" + std::to_string(getpid());
  o.pool_bytes = 1 << 20;
  o.block_bytes = kBlock;
  o.max_sessions = 4;
  o.mlock = false;
  return o;
}

// Two sessions: pages [0, 3) of both layers and 40 token ids in the first, one page and 5 ids in the second.
void make_pool(const PoolOptions& o) {
  freekv::SharedMemory::unlink(o.name).IgnoreError();
  auto pool = Pool::open(o);
  if (!pool.ok()) fail("cannot make the pool: " + std::string(pool.status().message()));
  int32_t ids[40];
  for (int i = 0; i < 40; ++i) ids[i] = i * 7;
  for (const auto& [id, pages, tokens] : {std::tuple{"first", 3, 40}, std::tuple{"second", 1, 5}}) {
    auto s = (*pool)->open_session(id, kGeo, true);
    if (!s.ok()) fail("cannot open a session");
    for (int32_t l = 0; l < int32_t(kGeo.n_layers); ++l) {
      for (int64_t p = 0; p < pages; ++p) {
        auto b = (*pool)->allocate(1, s->session.ref, l, p, 1);
        if (!b.ok()) fail("cannot allocate");
        std::memset((*pool)->block((*b)[0]), int(p + 1), kGeo.page_bytes());
        if (!(*pool)->commit(1, s->session.ref, l, p, 1).ok()) fail("cannot commit");
      }
    }
    if (!(*pool)->append_tokens(s->session.ref, ids, uint64_t(tokens)).ok()) fail("cannot append tokens");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FLAGS_minloglevel = google::GLOG_FATAL;  // every repaired table is logged: thousands of lines otherwise
  const PoolOptions o = options();
  make_pool(o);
  {
    auto shm = freekv::SharedMemory::open(o.name, true);
    if (!shm.ok()) fail("cannot map the pool");
    const auto* h = reinterpret_cast<const freekv::dp::PoolHeader*>((*shm)->data());
    // Metadata: everything before the blocks, and the first 8 blocks (index and token blocks come first).
    const uint64_t span = std::min<uint64_t>((*shm)->size(), h->blocks_offset + 8 * kBlock);
    for (size_t i = 0; i + 3 <= size; i += 3) {
      const uint64_t offset = (uint64_t(data[i]) | uint64_t(data[i + 1]) << 8) * 97 % span;
      (*shm)->data()[offset] = data[i + 2];
    }
  }
  auto pool = Pool::open(o);
  if (!pool.ok()) {
    if (pool.status().message().empty()) fail("a refused pool without a message");
    freekv::SharedMemory::unlink(o.name).IgnoreError();
    return 0;
  }
  Pool& p = **pool;
  const freekv::kvstore::PoolCounters c = p.counters();
  if (c.blocks_free + c.blocks_data + c.blocks_metadata + c.blocks_pending != c.blocks_total) {
    fail("the block counters do not add up to the pool");
  }
  for (const auto& s : p.list_sessions()) {
    if (!p.get_session(s.id).ok()) fail("a listed session cannot be read");
    auto again = p.open_session(s.id, s.geometry, false);
    if (!again.ok()) continue;  // its geometry may be one this pool's options refuse now
    auto b = p.allocate(2, again->session.ref, 0, 0, 1);
    if (b.ok() && !p.commit(2, again->session.ref, 0, 0, 1).ok()) fail("a kept session refused a commit");
    if (!p.close_session(s.id).ok()) fail("a kept session cannot be closed");
  }
  pool->reset();
  freekv::SharedMemory::unlink(o.name).IgnoreError();
  return 0;
}
