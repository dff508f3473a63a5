// SPSC rings and futex doorbells in shared memory: ordering, bounds, corrupt peers, and two processes.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "common/dataplane.h"
#include "common/doorbell.h"
#include "common/spsc_ring.h"

namespace freekv {
namespace {

struct Rec {
  uint64_t seq;
  uint64_t payload[7];
};

void* shared_anon(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  return p;
}

TEST(SpscRing, FifoFullEmpty) {
  constexpr uint32_t kCap = 8;
  void* mem = shared_anon(SpscRing<Rec>::bytes(kCap));
  auto prod = SpscRing<Rec>::create(mem, kCap);
  auto cons = SpscRing<Rec>::attach(mem, kCap);
  Rec r{};
  EXPECT_EQ(cons.try_pop(&r), RingResult::kEmpty);
  for (uint64_t i = 0; i < kCap; ++i) {
    r.seq = i;
    ASSERT_EQ(prod.try_push(r), RingResult::kOk);
  }
  EXPECT_EQ(prod.try_push(r), RingResult::kFull);
  EXPECT_FALSE(prod.has_space());
  for (uint64_t round = 0; round < 100; ++round) {  // wrap around many times
    Rec out{};
    ASSERT_EQ(cons.try_pop(&out), RingResult::kOk);
    EXPECT_EQ(out.seq, round);
    r.seq = round + kCap;
    ASSERT_EQ(prod.try_push(r), RingResult::kOk);
  }
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&static_cast<RingControl*>(mem)->tail) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&static_cast<RingControl*>(mem)->head) % 64, 0u);
  munmap(mem, SpscRing<Rec>::bytes(kCap));
}

TEST(SpscRing, DetectsACorruptPeer) {
  constexpr uint32_t kCap = 8;
  void* mem = shared_anon(SpscRing<Rec>::bytes(kCap));
  auto prod = SpscRing<Rec>::create(mem, kCap);
  auto cons = SpscRing<Rec>::attach(mem, kCap);
  auto* ctl = static_cast<RingControl*>(mem);
  ctl->tail.store(1000);  // a producer claiming more records than the ring holds
  Rec r{};
  EXPECT_EQ(cons.try_pop(&r), RingResult::kCorrupt);
  ctl->tail.store(0);
  ctl->head.store(5);  // a consumer claiming to have read records never written
  EXPECT_EQ(prod.try_push(r), RingResult::kCorrupt);
  munmap(mem, SpscRing<Rec>::bytes(kCap));
}

TEST(Doorbell, TimesOutAndWakes) {
  Doorbell bell;
  std::atomic<bool> flag{false};
  const int64_t t0 = Doorbell::now_ns();
  EXPECT_FALSE(bell.wait([&] { return flag.load(); }, 30'000'000));
  EXPECT_GE(Doorbell::now_ns() - t0, 30'000'000);
  std::thread t([&] {
    usleep(20000);
    flag.store(true);
    bell.notify();
  });
  EXPECT_TRUE(bell.wait([&] { return flag.load(); }, 5'000'000'000));
  t.join();
}

// A producer process and a consumer process exchange 200k records through a ring of 64 with futex
// waits on both sides (full and empty); every record arrives once, in order.
TEST(SpscRing, TwoProcesses) {
  constexpr uint32_t kCap = 64;
  constexpr uint64_t kN = 200000;
  void* mem = shared_anon(SpscRing<Rec>::bytes(kCap));
  SpscRing<Rec>::create(mem, kCap);
  const pid_t child = fork();
  if (child == 0) {
    auto prod = SpscRing<Rec>::attach(mem, kCap);
    for (uint64_t i = 0; i < kN; ++i) {
      Rec r{};
      r.seq = i;
      r.payload[6] = i * 3;
      for (;;) {
        RingResult rr = prod.try_push(r);
        if (rr == RingResult::kOk) break;
        if (rr == RingResult::kCorrupt) _exit(2);
        prod.control()->space.wait([&] { return prod.has_space(); }, 1'000'000'000);
      }
    }
    _exit(0);
  }
  auto cons = SpscRing<Rec>::attach(mem, kCap);
  uint64_t next = 0;
  while (next < kN) {
    Rec r;
    RingResult rr = cons.try_pop(&r);
    if (rr == RingResult::kOk) {
      ASSERT_EQ(r.seq, next);
      ASSERT_EQ(r.payload[6], next * 3);
      ++next;
      continue;
    }
    ASSERT_NE(rr, RingResult::kCorrupt);
    ASSERT_TRUE(cons.control()->data.wait([&] { return cons.has_data(); }, 5'000'000'000)) << "stuck at " << next;
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  munmap(mem, SpscRing<Rec>::bytes(kCap));
}

TEST(DataplaneAbi, Layout) {
  EXPECT_EQ(sizeof(dp::Request), 64u);
  EXPECT_EQ(sizeof(dp::Completion), 384u);
  EXPECT_EQ(sizeof(dp::SessionEntry) % 64, 0u);
  EXPECT_LE(sizeof(dp::PoolHeader), dp::kPoolHeaderBytes);
  dp::SessionGeometry g{32, 8, 128, 32, DType::kBF16};
  EXPECT_EQ(g.chunk_bytes(), 16384u);
  EXPECT_EQ(g.page_bytes(), 131072u);
}

}  // namespace
}  // namespace freekv
