// Failures leave nothing half done (DESIGN §5): a recall that fails or times out marks nothing as held
// and its staging pair comes back; draining continues past a failed recall and lands every other one.
// Plans are data, so the test writes them by hand and TieredKv carries them out against a real
// freekv-kvstore process, stopped (SIGSTOP) when a recall must time out.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include "tools/kvstore_process.h"
#include "worker/kv/tiered_kv.h"

namespace freekv {
namespace {

constexpr int64_t kLayers = 2, kKvHeads = 2, kHd = 64, kPt = 8, kSlots = 4, kPages = 12;

class RecallFailureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto p = KvstoreProcess::start("64MiB", "8KiB");
    ASSERT_TRUE(p.ok()) << p.status();
    kvstore_ = p->release();
  }
  static void TearDownTestSuite() {
    kill(kvstore_->pid(), SIGCONT);
    delete kvstore_;
  }

  void SetUp() override {
    KvstoreClient::Options o;
    o.worker_name = "recall-failure-test";
    o.staging_pairs = 2;
    o.timeout_ms = 300;
    auto c = KvstoreClient::connect(kvstore_->socket_path(), o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    recalls_ = std::make_unique<RecallQueue>(client_.get());
    session_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    auto info = client_->open_session(session_, session_geometry(geometry_), true);
    ASSERT_TRUE(info.ok()) << info.status();
    kv_ = std::make_unique<TieredKv>(&pool_, KvStoreBinding{recalls_.get(), info->ref}, kSlots, DigestKind::kMinMax, true);
    // kPages full pages of known bytes (every key of page p of (layer, head) is l·64 + h·16 + p, exact in
    // bf16), offloaded; then the middle ones leave local memory.
    ASSERT_TRUE(kv_->reserve(kPages * kPt).ok());
    for (int64_t l = 0; l < kLayers; ++l)
      for (int64_t h = 0; h < kKvHeads; ++h)
        for (int64_t t = 0; t < kPages * kPt; ++t)
          for (int64_t i = 0; i < kHd; ++i) {
            store_from_f32(kv_->k_row(l, h, t), DType::kBF16, size_t(i), float(l * 64 + h * 16 + t / kPt));
            store_from_f32(kv_->v_row(l, h, t), DType::kBF16, size_t(i), float(-t));
          }
    std::vector<int32_t> ids(size_t(kPages * kPt), 1);
    ASSERT_TRUE(kv_->commit(ids.data(), kPages * kPt).ok());
    for (int64_t l = 0; l < kLayers; ++l) {
      LayerPlan release = budget_plan(l);
      for (int32_t p = 2; p < 10; ++p) release.release.push_back(p);
      RetrievalStats st;
      ASSERT_TRUE(kv_->prepare(release, &st).ok());
    }
  }

  void TearDown() override {
    kill(kvstore_->pid(), SIGCONT);
    kv_.reset();
    if (client_) (void)client_->close_session(session_);
  }

  // A budget plan over the kPages pages: sinks 0-1, window 10-11, slots for the middle.
  static LayerPlan budget_plan(int64_t layer) {
    LayerPlan p;
    p.layer = layer;
    p.tokens = kPages * kPt;
    p.new_tokens = 1;
    p.sink_pages = 2;
    p.window_first = 10;
    p.dense = false;
    p.middle_from_slots = true;
    p.heads.resize(kKvHeads);
    return p;
  }

  // Stops the kvstore (returning once it is stopped) until the object goes away.
  struct Stopped {
    explicit Stopped(pid_t pid) : pid(pid) {
      kill(pid, SIGSTOP);
      for (int i = 0; i < 500 && state() != 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ~Stopped() { kill(pid, SIGCONT); }
    char state() const {  // the process state letter in /proc/PID/stat
      std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
      std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const size_t paren = all.rfind(')');
      return paren != std::string::npos && paren + 2 < all.size() ? all[paren + 2] : '?';
    }
    pid_t pid;
  };

  // Waits (bounded) for every staging pair to be free again.
  bool all_pairs_free() {
    for (int i = 0; i < 100; ++i) {
      if (client_->free_pairs() == client_->staging_pairs()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  static KvstoreProcess* kvstore_;
  KvGeometry geometry_{kLayers, kKvHeads, kHd, kPt, DType::kBF16};
  KvBlockPool pool_{geometry_, 16ull << 20};
  std::unique_ptr<KvstoreClient> client_;
  std::unique_ptr<RecallQueue> recalls_;
  std::string session_;
  std::unique_ptr<TieredKv> kv_;
};
KvstoreProcess* RecallFailureTest::kvstore_ = nullptr;

TEST_F(RecallFailureTest, TimedOutBackgroundRecallHoldsNothingAndReturnsItsPair) {
  LayerPlan plan = budget_plan(0);
  plan.heads[0].fetch_next = {{0, 4}, {1, 5}};
  plan.heads[1].fetch_next = {{0, 6}};
  RetrievalStats st;
  ASSERT_TRUE(kv_->prepare(budget_plan(0), &st).ok());  // allocates the slots
  {
    Stopped stopped(kvstore_->pid());
    ASSERT_TRUE(kv_->after_attention(plan, &st).ok());
    EXPECT_EQ(kv_->slot_pages(0, 0)[0], 4) << "planned contents before the recall lands";
    absl::Status s = kv_->prepare(budget_plan(0), &st);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    for (int64_t h = 0; h < kKvHeads; ++h)
      for (int32_t page : kv_->slot_pages(0, h)) EXPECT_EQ(page, -1) << "a slot of a timed-out recall counts as held";
    EXPECT_EQ(recalls_->in_flight(), 0u);
  }
  EXPECT_TRUE(all_pairs_free()) << "the timed-out recall's staging pair never came back";
  // And recall works again, into the same slots, with the right bytes.
  LayerPlan again = budget_plan(0);
  again.heads[0].fetch_now = {{0, 4}};
  again.heads[0].middle = {4};
  ASSERT_TRUE(kv_->prepare(again, &st).ok());
  EXPECT_EQ(kv_->slot_pages(0, 0)[0], 4);
  EXPECT_EQ(bf16_to_f32(reinterpret_cast<const uint16_t*>(kv_->slot_data(0, 0, 0))[0]), 4.f);  // layer 0, head 0, page 4
}

TEST_F(RecallFailureTest, TimedOutRecallBeforeAttentionHoldsNothing) {
  LayerPlan plan = budget_plan(1);
  plan.heads[0].fetch_now = {{0, 3}, {1, 7}};
  plan.heads[0].middle = {3, 7};
  RetrievalStats st;
  {
    Stopped stopped(kvstore_->pid());
    absl::Status s = kv_->prepare(plan, &st);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  }
  EXPECT_EQ(kv_->slot_pages(1, 0)[0], -1);
  EXPECT_EQ(kv_->slot_pages(1, 0)[1], -1);
  EXPECT_TRUE(all_pairs_free());
  ASSERT_TRUE(kv_->prepare(plan, &st).ok());
  EXPECT_EQ(kv_->slot_pages(1, 0)[1], 7);
  EXPECT_EQ(bf16_to_f32(reinterpret_cast<const uint16_t*>(kv_->slot_data(1, 0, 1))[0]), 64.f + 7.f);  // layer 1, page 7
}

TEST_F(RecallFailureTest, APlanNamingPagesOrSlotsTheLayerLacksFailsCleanly) {
  LayerPlan plan = budget_plan(0);
  plan.heads[0].fetch_next = {{0, 40}};
  RetrievalStats st;
  absl::Status s = kv_->after_attention(plan, &st);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  plan = budget_plan(0);
  plan.heads[1].fetch_now = {{kSlots, 3}};
  EXPECT_EQ(kv_->prepare(plan, &st).code(), absl::StatusCode::kInternal);
  plan = budget_plan(0);
  plan.release = {-1};
  EXPECT_EQ(kv_->prepare(plan, &st).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(recalls_->in_flight(), 0u);
}

TEST_F(RecallFailureTest, DrainContinuesPastAFailedRecallAndLandsTheOthers) {
  RetrievalStats st;
  for (int64_t l = 0; l < kLayers; ++l) ASSERT_TRUE(kv_->prepare(budget_plan(l), &st).ok());
  // Layer 0 asks for a page the kvstore does not hold (closed under it: the recall fails); layer 1 for
  // pages it holds.
  LayerPlan bad = budget_plan(0);
  bad.heads[1].fetch_next = {{2, 6}};
  LayerPlan good = budget_plan(1);
  good.heads[0].fetch_next = {{0, 5}, {3, 4}};
  ASSERT_TRUE(kv_->truncate_store(6 * kPt).ok());  // pages 6.. leave the kvstore
  ASSERT_TRUE(kv_->after_attention(bad, &st).ok());
  ASSERT_TRUE(kv_->after_attention(good, &st).ok());
  EXPECT_EQ(recalls_->in_flight(), 2u);
  std::vector<RetrievalStats> stats(kLayers);
  absl::Status s = kv_->drain(&stats);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("not committed"), std::string::npos) << s;
  EXPECT_EQ(recalls_->in_flight(), 0u);
  EXPECT_EQ(kv_->slot_pages(0, 1)[2], -1);
  EXPECT_EQ(kv_->slot_pages(1, 0)[0], 5);
  EXPECT_EQ(kv_->slot_pages(1, 0)[3], 4);
  EXPECT_EQ(bf16_to_f32(reinterpret_cast<const uint16_t*>(kv_->slot_data(1, 0, 3))[0]), 64.f + 4.f);
  EXPECT_EQ(stats[1].pages_recalled, 2);
  EXPECT_TRUE(all_pairs_free());
}

}  // namespace
}  // namespace freekv
