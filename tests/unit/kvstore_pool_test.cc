// The kvstore pool: header, allocator, sessions, page tables, token ids, and recovery on reattach.
#include "kvstore/pool.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/integration/kvstore_test_util.h"

namespace freekv::kvstore {
namespace {

using freekv::testing::fill_page;
using freekv::testing::unique_name;

constexpr uint64_t kBlock = 16 << 10;
const dp::SessionGeometry kGeo{2, 2, 16, 8, DType::kBF16};  // page = 2 × 2·8·16·2 = 1 KiB

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts_.name = unique_name("pool");
    opts_.pool_bytes = 4 << 20;
    opts_.block_bytes = kBlock;
    opts_.max_sessions = 8;
    opts_.mlock = false;
  }
  void TearDown() override { SharedMemory::unlink(opts_.name).IgnoreError(); }

  std::unique_ptr<Pool> open_pool() {
    auto p = Pool::open(opts_);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  // Allocates, fills and commits pages [0, n) of every layer of `id`.
  void write_pages(Pool* pool, const std::string& id, SessionRef ref, int64_t n, uint32_t owner = 1) {
    for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
      for (int64_t p = 0; p < n; ++p) {
        auto b = pool->allocate(owner, ref, int32_t(l), p, 1);
        ASSERT_TRUE(b.ok()) << b.status();
        fill_page(id, int(l), p, pool->block((*b)[0]), kGeo.page_bytes());
        ASSERT_TRUE(pool->commit(owner, ref, int32_t(l), p, 1).ok());
      }
    }
  }

  void check_pages(Pool* pool, const std::string& id, SessionRef ref, int64_t n) {
    Pool::ReadLock lock(pool);
    auto e = pool->resolve_locked(ref);
    ASSERT_TRUE(e.ok()) << e.status();
    std::vector<uint8_t> expect(kGeo.page_bytes());
    for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
      for (int64_t p = 0; p < n; ++p) {
        const int64_t b = pool->committed_block_locked(**e, l, uint64_t(p));
        ASSERT_GE(b, 0) << "layer " << l << " page " << p;
        fill_page(id, int(l), p, expect.data(), expect.size());
        ASSERT_EQ(0, std::memcmp(expect.data(), pool->block(uint32_t(b)), expect.size()));
      }
    }
  }

  PoolOptions opts_;
};

TEST_F(PoolTest, CreatesReattachesAndKeepsEverything) {
  SessionRef ra, rb;
  {
    auto pool = open_pool();
    ASSERT_TRUE(pool->created());
    auto a = pool->open_session("a", kGeo, true);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->created);
    ra = a->session.ref;
    auto b = pool->open_session("b", kGeo, true);
    ASSERT_TRUE(b.ok());
    rb = b->session.ref;
    write_pages(pool.get(), "a", ra, 5);
    write_pages(pool.get(), "b", rb, 3);
    std::vector<int32_t> ids(5000);  // spans two token blocks (4096 ids each)
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 7);
    ASSERT_TRUE(pool->append_tokens(ra, ids.data(), 3000).ok());
    ASSERT_TRUE(pool->append_tokens(ra, ids.data() + 3000, 2000).ok());
    // A page handed out but never committed: reclaimed at reattach.
    ASSERT_TRUE(pool->allocate(1, rb, 0, 10, 2).ok());
    EXPECT_EQ(pool->counters().blocks_pending, 2u);
  }
  auto pool = open_pool();
  ASSERT_FALSE(pool->created());
  const PoolCounters c = pool->counters();
  EXPECT_EQ(c.sessions, 2u);
  EXPECT_EQ(c.blocks_data, 2u * 5 + 2u * 3);
  EXPECT_EQ(c.blocks_pending, 0u);
  EXPECT_EQ(c.starts, 2u);
  EXPECT_EQ(c.blocks_free + c.blocks_data + c.blocks_metadata, c.blocks_total);
  check_pages(pool.get(), "a", ra, 5);
  check_pages(pool.get(), "b", rb, 3);
  auto again = pool->open_session("a", kGeo, false);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->session.ref.generation, ra.generation);
  EXPECT_EQ(again->session.n_tokens, 5000u);
  // The ids read back after the restart, across the token-block boundary, in order.
  auto stored = pool->token_ids("a");
  ASSERT_TRUE(stored.ok()) << stored.status();
  std::vector<int32_t> expected(5000);
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = int32_t(i * 7);
  EXPECT_EQ(*stored, expected);
  EXPECT_EQ(pool->token_ids("b")->size(), 0u);
  EXPECT_EQ(pool->token_ids("missing").status().code(), absl::StatusCode::kNotFound);
  auto s = pool->get_session("a");
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->layers.size(), 2u);
  EXPECT_EQ(s->layers[1].pages, 5u);
  EXPECT_EQ(s->layers[1].highest_page, 4);
}

TEST_F(PoolTest, APoolLargerThanDevShmIsRefusedAtStartAndLeavesNothing) {
  // The memory is reserved when the segment is made: no SIGBUS when a full /dev/shm meets a later write.
  opts_.pool_bytes = shm_free_bytes() + (1ull << 30);
  auto p = Pool::open(opts_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
  EXPECT_NE(p.status().message().find("free"), std::string::npos) << p.status();
  EXPECT_NE(p.status().message().find("/dev/shm/" + opts_.name), std::string::npos) << p.status();
  EXPECT_EQ(SharedMemory::open(opts_.name, false).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, EphemeralSessionsDoNotOutliveAKvstoreCrash) {
  // The process holding the pool dies without detaching anyone (the object is dropped, as by kill -9):
  // the next start closes the sessions that belonged to attachments and keeps the others.
  {
    auto pool = open_pool();
    ASSERT_NE(pool, nullptr);
    auto e = pool->open_session("one-off", kGeo, true, /*ephemeral_owner=*/7);
    ASSERT_TRUE(e.ok()) << e.status();
    write_pages(pool.get(), "one-off", e->session.ref, 3, 7);
    auto k = pool->open_session("kept", kGeo, true);
    ASSERT_TRUE(k.ok());
    write_pages(pool.get(), "kept", k->session.ref, 2);
  }
  auto pool = open_pool();
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->get_session("one-off").status().code(), absl::StatusCode::kNotFound);
  auto kept = pool->get_session("kept");
  ASSERT_TRUE(kept.ok());
  check_pages(pool.get(), "kept", kept->ref, 2);
  EXPECT_EQ(pool->counters().blocks_data, 2u * kGeo.n_layers) << "the one-off session's pages were not freed";
}

TEST_F(PoolTest, RefusesAnotherGeometryOrVersion) {
  { auto pool = open_pool(); }
  PoolOptions o = opts_;
  o.block_bytes = 2 * kBlock;
  auto r = Pool::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("block size"), std::string::npos) << r.status();
  o = opts_;
  o.pool_bytes = 8 << 20;
  r = Pool::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pool size"), std::string::npos) << r.status();
  o = opts_;
  o.max_sessions = 9;
  r = Pool::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("session slots"), std::string::npos) << r.status();

  {  // another format version
    auto shm = SharedMemory::open(opts_.name, true);
    ASSERT_TRUE(shm.ok());
    reinterpret_cast<dp::PoolHeader*>((*shm)->data())->abi_version = dp::kAbiVersion + 1;
  }
  r = Pool::open(opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("version"), std::string::npos) << r.status();
}

TEST_F(PoolTest, RefusesForeignSegmentsAndASecondOwner) {
  {
    auto shm = SharedMemory::create(opts_.name, 1 << 20);
    ASSERT_TRUE(shm.ok());
    std::memcpy((*shm)->data(), "not a pool at all", 17);
  }
  auto r = Pool::open(opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a freekv pool"), std::string::npos) << r.status();
  ASSERT_TRUE(SharedMemory::unlink(opts_.name).ok());

  auto pool = open_pool();
  auto second = Pool::open(opts_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
}

TEST_F(PoolTest, RecreatesASegmentWhoseInitialisationWasInterrupted) {
  { ASSERT_TRUE(SharedMemory::create(opts_.name, 1 << 20).ok()); }  // all zeros, as after a crash
  auto pool = open_pool();
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->created());
}

TEST_F(PoolTest, ValidatesGeometryAndIds) {
  auto pool = open_pool();
  dp::SessionGeometry big{32, 8, 128, 32, DType::kBF16};  // 128 KiB pages > 16 KiB blocks
  auto r = pool->open_session("big", big, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--block-size"), std::string::npos) << r.status();
  EXPECT_EQ(pool->open_session("", kGeo, true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->open_session(std::string(200, 'x'), kGeo, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  dp::SessionGeometry zero = kGeo;
  zero.head_dim = 0;
  EXPECT_EQ(pool->open_session("z", zero, true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->open_session("missing", kGeo, false).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(pool->open_session("s", kGeo, true).ok());
  dp::SessionGeometry other = kGeo;
  other.head_dim = 32;
  auto m = pool->open_session("s", other, true);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("head_dim 16 vs 32"), std::string::npos) << m.status();
  EXPECT_EQ(pool->close_session("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->get_session("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, DataPathErrors) {
  auto pool = open_pool();
  auto s = pool->open_session("s", kGeo, true);
  ASSERT_TRUE(s.ok());
  const SessionRef ref = s->session.ref;
  EXPECT_EQ(pool->allocate(1, ref, 2, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);   // layer
  EXPECT_EQ(pool->allocate(1, ref, 0, -1, 1).status().code(), absl::StatusCode::kInvalidArgument);  // page
  EXPECT_EQ(pool->allocate(1, ref, 0, 0, 17).status().code(), absl::StatusCode::kInvalidArgument);  // count
  EXPECT_EQ(pool->allocate(1, ref, 0, int64_t(1) << 40, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->commit(1, ref, 0, 0, 1).code(), absl::StatusCode::kFailedPrecondition);  // never allocated
  ASSERT_TRUE(pool->allocate(1, ref, 0, 0, 1).ok());
  EXPECT_EQ(pool->commit(2, ref, 0, 0, 1).code(), absl::StatusCode::kFailedPrecondition);  // another owner's
  SessionRef stale = ref;
  stale.generation += 100;
  EXPECT_EQ(pool->allocate(1, stale, 0, 0, 1).status().code(), absl::StatusCode::kNotFound);
  SessionRef bad_slot{1000, 1};
  EXPECT_EQ(pool->append_tokens(bad_slot, nullptr, 0).code(), absl::StatusCode::kOk);  // empty append is a no-op
  const int32_t neg = -3;
  EXPECT_EQ(pool->append_tokens(ref, &neg, 1).code(), absl::StatusCode::kInvalidArgument);
  int32_t one = 1;
  EXPECT_EQ(pool->append_tokens(bad_slot, &one, 1).code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, FullPoolFailsOnlyTheRequesterAndCloseFreesEverything) {
  auto pool = open_pool();
  auto a = pool->open_session("a", kGeo, true);
  auto b = pool->open_session("b", kGeo, true);
  ASSERT_TRUE(a.ok() && b.ok());
  write_pages(pool.get(), "b", b->session.ref, 2);
  const uint64_t total = pool->counters().blocks_total;
  int64_t page = 0;
  absl::Status last;
  for (;;) {
    auto r = pool->allocate(1, a->session.ref, 0, page, 1);
    if (!r.ok()) {
      last = r.status();
      break;
    }
    ASSERT_TRUE(pool->commit(1, a->session.ref, 0, page, 1).ok());
    ++page;
    ASSERT_LT(uint64_t(page), total);
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(last.message().find("--pool-size"), std::string::npos) << last;
  EXPECT_EQ(pool->counters().blocks_free, 0u);
  check_pages(pool.get(), "b", b->session.ref, 2);  // untouched
  auto freed = pool->close_session("a");
  ASSERT_TRUE(freed.ok());
  EXPECT_GE(*freed, uint64_t(page));
  write_pages(pool.get(), "b", b->session.ref, 4);
  ASSERT_TRUE(pool->close_session("b").ok());
  const PoolCounters c = pool->counters();
  EXPECT_EQ(c.blocks_free, c.blocks_total);
  EXPECT_EQ(c.sessions, 0u);
}

TEST_F(PoolTest, CommitReplacesAndOwnersReleasePending) {
  auto pool = open_pool();
  auto s = pool->open_session("s", kGeo, true);
  ASSERT_TRUE(s.ok());
  const SessionRef ref = s->session.ref;
  write_pages(pool.get(), "s", ref, 1);
  const uint64_t data_before = pool->counters().blocks_data;
  auto again = pool->allocate(1, ref, 0, 0, 1);  // rewrite page 0 of layer 0
  ASSERT_TRUE(again.ok());
  auto same = pool->allocate(1, ref, 0, 0, 1);  // asking again returns the same pending block
  ASSERT_TRUE(same.ok());
  EXPECT_EQ((*again)[0], (*same)[0]);
  std::memset(pool->block((*again)[0]), 0xAB, kGeo.page_bytes());
  ASSERT_TRUE(pool->commit(1, ref, 0, 0, 1).ok());
  EXPECT_EQ(pool->counters().blocks_data, data_before);  // the old block went back
  {
    Pool::ReadLock lock(pool.get());
    auto e = pool->resolve_locked(ref);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(pool->committed_block_locked(**e, 0, 0), int64_t((*again)[0]));
  }
  ASSERT_TRUE(pool->allocate(7, ref, 1, 3, 4).ok());
  ASSERT_TRUE(pool->allocate(8, ref, 1, 3, 2).ok());
  EXPECT_EQ(pool->counters().blocks_pending, 6u);
  EXPECT_EQ(pool->release_owner(7), 4u);
  ASSERT_TRUE(pool->discard(8, ref, 1, 3, 2).ok());
  EXPECT_EQ(pool->counters().blocks_pending, 0u);
}

TEST_F(PoolTest, RepairsDamagedTablesAtReattach) {
  SessionRef ref;
  {
    auto pool = open_pool();
    auto s = pool->open_session("s", kGeo, true);
    ASSERT_TRUE(s.ok());
    ref = s->session.ref;
    write_pages(pool.get(), "s", ref, 3);
  }
  {
    // Point one page-table entry at a block beyond the pool and another at a block already in use.
    auto shm = SharedMemory::open(opts_.name, true);
    ASSERT_TRUE(shm.ok());
    auto* h = reinterpret_cast<dp::PoolHeader*>((*shm)->data());
    auto* e = reinterpret_cast<dp::SessionEntry*>((*shm)->data() + h->session_table_offset) + ref.slot;
    const uint32_t idx = e->index_blocks[0].load() - 1;
    auto* entries = reinterpret_cast<std::atomic<uint32_t>*>((*shm)->data() + h->blocks_offset + uint64_t(idx) * h->block_bytes);
    entries[0].store(uint32_t(h->block_count) + 50);     // (layer 0, page 0): out of range
    entries[1].store(entries[2].load());                  // (layer 1, page 0): shares (layer 0, page 1)'s block
  }
  auto pool = open_pool();
  ASSERT_NE(pool, nullptr);
  Pool::ReadLock lock(pool.get());
  auto e = pool->resolve_locked(ref);
  ASSERT_TRUE(e.ok());
  EXPECT_LT(pool->committed_block_locked(**e, 0, 0), 0);
  int valid = (pool->committed_block_locked(**e, 1, 0) >= 0) + (pool->committed_block_locked(**e, 0, 1) >= 0);
  EXPECT_EQ(valid, 1);  // exactly one of the two references to the shared block survives
  EXPECT_GE(pool->committed_block_locked(**e, 0, 2), 0);
}

}  // namespace
}  // namespace freekv::kvstore
