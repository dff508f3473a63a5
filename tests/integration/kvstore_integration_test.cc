// freekv-kvstore with real processes: several workers at once, kill -9 of a worker mid-recall and of
// the kvstore itself, restarts (compatible and not), pool exhaustion and bad requests. The workers are
// kvstore_test_worker processes; every page they check is a function of (session, layer, page).
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/shm.h"
#include "tests/integration/kvstore_test_util.h"
#include "worker/kv/kvstore_client.h"

namespace freekv {
namespace {

using freekv::testing::Child;
using freekv::testing::now_ms;
using freekv::testing::unique_name;
using freekv::testing::wait_for_socket;

class KvstoreProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = unique_name("it");
    socket_ = "/tmp/" + unique_name("it") + ".sock";
  }
  void TearDown() override {
    kvstore_.kill9();
    SharedMemory::unlink(pool_).IgnoreError();
    unlink(socket_.c_str());
    // Channel segments of a kvstore killed with -9 (a restart on the pool would remove them).
    if (DIR* d = opendir("/dev/shm")) {
      while (dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n.rfind(pool_ + ".ch", 0) == 0) SharedMemory::unlink(n).IgnoreError();
      }
      closedir(d);
    }
  }

  std::vector<std::string> kvstore_args(const std::string& pool_size = "64MiB", const std::string& block = "144KiB") {
    return {FREEKV_KVSTORE_BIN, "--listen",      "unix:" + socket_, "--pool-name", pool_,     "--pool-size",
            pool_size,          "--block-size",  block,             "--max-sessions", "32",   "--mlock=false"};
  }
  void start_kvstore(const std::string& pool_size = "64MiB") {
    kvstore_ = Child::spawn(kvstore_args(pool_size));
    ASSERT_TRUE(wait_for_socket(socket_, 10000)) << kvstore_.output;
  }
  Child worker(const std::string& mode, const std::string& sessions, int64_t pages, int seed = 1, int rounds = 10) {
    return Child::spawn({FREEKV_TEST_WORKER_BIN, mode, "--socket", socket_, "--sessions", sessions, "--pages",
                         std::to_string(pages), "--seed", std::to_string(seed), "--rounds", std::to_string(rounds)});
  }
  void run_worker(const std::string& mode, const std::string& sessions, int64_t pages, int seed = 1) {
    Child w = worker(mode, sessions, pages, seed);
    const int rc = w.wait(30000);
    EXPECT_EQ(rc, 0) << mode << " worker output:\n" << w.output << "\nkvstore:\n" << kvstore_.output;
    EXPECT_NE(w.output.find("OK"), std::string::npos) << w.output;
  }
  KvPoolStats stats() {
    auto c = KvstoreClient::connect(socket_);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return {};
    auto s = (*c)->pool_stats();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : KvPoolStats{};
  }
  // Waits until no worker but the stats probe is attached and nothing is pending.
  bool wait_idle(int64_t timeout_ms) {
    const int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
      KvPoolStats s = stats();
      if (s.workers <= 1 && s.blocks_pending == 0) return true;
      usleep(50000);
    }
    return false;
  }

  std::string pool_, socket_;
  Child kvstore_;
};

TEST_F(KvstoreProcessTest, ConcurrentWorkersWriteAndRecallEveryByte) {
  start_kvstore();
  std::vector<Child> ws;
  ws.push_back(worker("write", "w1a,w1b", 6, 1));
  ws.push_back(worker("write", "w2a,w2b", 5, 2));
  ws.push_back(worker("write", "w3a", 7, 3));
  for (auto& w : ws) {
    EXPECT_EQ(w.wait(30000), 0) << w.output << "\nkvstore:\n" << kvstore_.output;
  }
  run_worker("verify", "w1a,w1b", 6);
  run_worker("verify", "w3a", 7);
  ASSERT_TRUE(wait_idle(5000));
  KvPoolStats s = stats();
  EXPECT_EQ(s.sessions, 5u);
  EXPECT_EQ(s.blocks_data, 4u * (6 + 6 + 5 + 5 + 7));
  EXPECT_EQ(s.blocks_pending, 0u);
  EXPECT_GT(s.bytes_recalled_total, 0u);
}

TEST_F(KvstoreProcessTest, KillWorkerMidRecallThenKillAndRestartKvstore) {
  start_kvstore();
  run_worker("write", "k1,k2", 6);
  const uint64_t data_blocks = stats().blocks_data;
  Child loop = worker("recall-loop", "k1,k2", 6, 9);
  ASSERT_TRUE(loop.wait_for_output("RECALLING", 10000)) << loop.output;
  usleep(100000);  // let it get well into recalling
  loop.kill9();
  // Its channel goes away and its uncommitted pages come back; the sessions stay.
  ASSERT_TRUE(wait_idle(5000));
  KvPoolStats s = stats();
  EXPECT_EQ(s.blocks_pending, 0u);
  EXPECT_EQ(s.blocks_data, data_blocks);
  EXPECT_EQ(s.sessions, 2u);
  EXPECT_EQ(s.pool_starts, 1u);

  // A worker holding uncommitted pages while the kvstore dies: nothing leaks at the restart.
  Child loop2 = worker("recall-loop", "k1", 6, 10);
  ASSERT_TRUE(loop2.wait_for_output("RECALLING", 10000)) << loop2.output;
  kvstore_.kill9();
  EXPECT_NE(loop2.wait(10000), 0);  // the worker sees the kvstore go away and fails, it does not hang

  start_kvstore();
  run_worker("verify", "k1,k2", 6);
  ASSERT_TRUE(wait_idle(5000));
  s = stats();
  EXPECT_EQ(s.pool_starts, 2u);
  EXPECT_EQ(s.blocks_pending, 0u);
  EXPECT_EQ(s.blocks_data, data_blocks);
  EXPECT_EQ(s.blocks_used, s.blocks_data + s.blocks_metadata);
}

TEST_F(KvstoreProcessTest, RestartRefusesAnotherGeometryAndKeepsTheSegment) {
  start_kvstore();
  run_worker("write", "g1", 3);
  kill(kvstore_.pid, SIGTERM);
  EXPECT_EQ(kvstore_.wait(10000), 0) << kvstore_.output;

  Child wrong = Child::spawn(kvstore_args("64MiB", "256KiB"));
  EXPECT_EQ(wrong.wait(10000), 1);
  EXPECT_NE(wrong.output.find("block size (--block-size) is 144 KiB in the segment but 256 KiB here"),
            std::string::npos)
      << wrong.output;
  Child wrong_size = Child::spawn(kvstore_args("32MiB"));
  EXPECT_EQ(wrong_size.wait(10000), 1);
  EXPECT_NE(wrong_size.output.find("pool size"), std::string::npos) << wrong_size.output;

  start_kvstore();
  run_worker("verify", "g1", 3);
  // A second kvstore on the same pool (another socket) is refused while the first runs.
  Child twin = Child::spawn({FREEKV_KVSTORE_BIN, "--listen", "unix:" + socket_ + ".2", "--pool-name", pool_,
                             "--pool-size", "64MiB", "--max-sessions", "32", "--mlock=false"});
  EXPECT_EQ(twin.wait(10000), 1);
  EXPECT_NE(twin.output.find("in use"), std::string::npos) << twin.output;
  // --stats reports health and the sessions.
  Child st = Child::spawn({FREEKV_KVSTORE_BIN, "--listen", "unix:" + socket_, "--stats"});
  EXPECT_EQ(st.wait(10000), 0) << st.output;
  EXPECT_NE(st.output.find("\"health\": \"SERVING\""), std::string::npos) << st.output;
  EXPECT_NE(st.output.find("\"session_id\": \"g1\""), std::string::npos) << st.output;
  // ... and the limits a worker may ask for, flag by flag.
  EXPECT_NE(st.output.find("\"max_staging_pairs\": 64"), std::string::npos) << st.output;
  EXPECT_NE(st.output.find("\"max_recall_items\": 4096"), std::string::npos) << st.output;
}

TEST_F(KvstoreProcessTest, PoolExhaustionFailsOnlyTheRequester) {
  start_kvstore("16MiB");
  run_worker("write", "e1,e2", 4);
  run_worker("exhaust", "e1,e2", 4);
  run_worker("verify", "e1,e2", 4);
}

TEST_F(KvstoreProcessTest, BadRequestsAreRefusedAndNothingIsCorrupted) {
  start_kvstore();
  run_worker("write", "b1,b2", 4);
  run_worker("bad", "b1,b2", 4);
  run_worker("verify", "b1,b2", 4);
  // A worker that connects and vanishes before doing anything leaves no trace.
  Child quick = worker("verify", "no-such", 1);
  quick.wait(10000);
  ASSERT_TRUE(wait_idle(5000));
  EXPECT_EQ(stats().sessions, 2u);
}

}  // namespace
}  // namespace freekv
