// The kvstore server in-process with the worker client library: offload, tokens, double-buffered
// recall (byte for byte), several recalls in flight, bad requests, pool exhaustion, detaching, and a
// worker that corrupts its ring.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include <grpcpp/grpcpp.h>

#include "freekv/v1/kvstore.grpc.pb.h"
#include "kvstore/server.h"
#include "tests/integration/kvstore_test_util.h"
#include "worker/kv/kvstore_client.h"

namespace freekv {
namespace {

using freekv::testing::check_chunk;
using freekv::testing::fill_page;
using freekv::testing::unique_name;

const KvSessionGeometry kGeo{3, 4, 32, 16, DType::kBF16};  // chunk 2 KiB, page 8 KiB

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts_.pool.name = unique_name("svc");
    opts_.pool.pool_bytes = 8 << 20;
    opts_.pool.block_bytes = 16 << 10;
    opts_.pool.max_sessions = 16;
    opts_.pool.mlock = false;
    socket_ = "/tmp/" + unique_name("svc") + ".sock";
    opts_.listen = "unix:" + socket_;
    opts_.cuda_register = false;
    start();
  }
  void TearDown() override {
    server_.reset();
    SharedMemory::unlink(opts_.pool.name).IgnoreError();
  }
  void start() {
    auto s = kvstore::KvstoreServer::start(opts_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
  }
  std::unique_ptr<KvstoreClient> client(uint32_t pairs = 4, uint64_t buffer = 16 << 10) {
    KvstoreClient::Options o;
    o.worker_name = "test";
    o.staging_pairs = pairs;
    o.staging_buffer_bytes = buffer;
    o.timeout_ms = 10000;
    auto c = KvstoreClient::connect(socket_, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  // Writes and commits pages [0, n) of every layer.
  static void write(KvstoreClient* c, const std::string& id, SessionRef ref, int64_t n) {
    for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
      for (int64_t p = 0; p < n; p += 4) {
        const int k = int(std::min<int64_t>(4, n - p));
        auto blocks = c->pages_for_write(ref, int(l), p, k);
        ASSERT_TRUE(blocks.ok()) << blocks.status();
        for (int i = 0; i < k; ++i) fill_page(id, int(l), p + i, (*blocks)[size_t(i)], kGeo.page_bytes());
        ASSERT_TRUE(c->commit_pages(ref, int(l), p, k).ok());
      }
    }
  }
  // Recalls `items` of `layer` and checks every byte and the order.
  static void recall_and_check(KvstoreClient* c, const std::string& id, SessionRef ref, int layer,
                               const std::vector<RecallItem>& items, RecallMode mode = RecallMode::kDoubleBuffered) {
    auto t = c->post_recall(ref, layer, items, mode);
    ASSERT_TRUE(t.ok()) << t.status();
    int64_t expect_next = 0;
    absl::Status s = c->wait_recall(*t, [&](int64_t i, const uint8_t* chunk) {
      ASSERT_EQ(i, expect_next++);
      const RecallItem& it = items[size_t(i)];
      ASSERT_EQ(check_chunk(id, layer, it.page, it.kv_head, kGeo.chunk_bytes(), kGeo.page_bytes(), chunk), -1)
          << "item " << i;
    });
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(expect_next, int64_t(items.size()));
  }
  static std::vector<RecallItem> random_items(std::mt19937& rng, int64_t pages, size_t n) {
    std::vector<RecallItem> v(n);
    for (auto& it : v) it = RecallItem{uint32_t(rng() % kGeo.n_kv_heads), uint32_t(rng() % pages)};
    return v;
  }
  kvstore::PoolCounters counters() const { return server_->pool()->counters(); }

  kvstore::ServerOptions opts_;
  std::string socket_;
  std::unique_ptr<kvstore::KvstoreServer> server_;
};

TEST_F(ServiceTest, OffloadTokensAndRecallEveryByte) {
  auto c = client();
  ASSERT_NE(c, nullptr);
  auto s = c->open_session("s1", kGeo, true);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->created);
  write(c.get(), "s1", s->ref, 20);
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    for (int64_t p = 0; p < 20; ++p) {
      const uint8_t* page = c->committed_page(s->ref, int(l), p);
      ASSERT_NE(page, nullptr);
      for (uint32_t h = 0; h < kGeo.n_kv_heads; ++h) {
        ASSERT_EQ(check_chunk("s1", int(l), p, h, kGeo.chunk_bytes(), kGeo.page_bytes(), page + h * kGeo.chunk_bytes()),
                  -1);
      }
    }
  }
  EXPECT_EQ(c->committed_page(s->ref, 0, 20), nullptr);
  std::mt19937 rng(7);
  // 8 chunks fit one 16 KiB buffer: 37 items take 5 hand-overs alternating between the two buffers.
  for (int round = 0; round < 10; ++round) {
    recall_and_check(c.get(), "s1", s->ref, int(rng() % 3), random_items(rng, 20, 1 + rng() % 40));
  }
  recall_and_check(c.get(), "s1", s->ref, 1, random_items(rng, 20, 37), RecallMode::kSingleBuffered);
  recall_and_check(c.get(), "s1", s->ref, 1, {});

  const std::vector<int32_t> ids = freekv::testing::session_tokens("s1", 10000);  // > one 4096-id token block
  ASSERT_TRUE(c->append_tokens(s->ref, ids.data(), 6000).ok());
  ASSERT_TRUE(c->append_tokens(s->ref, ids.data() + 6000, 4000).ok());
  auto got = c->tokens(s->ref);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, ids);

  auto st = c->session_stats("s1");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->n_tokens, 10000u);
  EXPECT_EQ(st->committed_pages, 60u);
  ASSERT_EQ(st->layers.size(), 3u);
  EXPECT_EQ(st->layers[2].pages, 20u);
  EXPECT_EQ(st->layers[2].bytes, 20u * kGeo.page_bytes());
  EXPECT_EQ(st->layers[2].highest_page, 19);
  auto ps = c->pool_stats();
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(ps->blocks_data, 60u);
  // 60 pages of 8 KiB + 1.5 KiB of key statistics in 16 KiB blocks: the rest is reported as unused.
  EXPECT_EQ(server_->pool_stats().block_bytes_unused(), 60u * ((16u << 10) - kGeo.stored_page_bytes()));
  EXPECT_EQ(ps->workers, 1u);
  EXPECT_GT(ps->bytes_recalled_total, 0u);
  EXPECT_GT(ps->recall_gbps_last_minute, 0.0);
}

TEST_F(ServiceTest, TruncateKeepsIdsAndTheirWholePagesOnly) {
  auto c = client();
  ASSERT_NE(c, nullptr);
  auto s = c->open_session("t1", kGeo, true);
  ASSERT_TRUE(s.ok()) << s.status();
  write(c.get(), "t1", s->ref, 20);
  const std::vector<int32_t> ids = freekv::testing::session_tokens("t1", 330);
  ASSERT_TRUE(c->append_tokens(s->ref, ids.data(), 330).ok());
  // 100 ids fill pages 0..5 (16 tokens each) completely; page 6 holds four of them and goes.
  ASSERT_TRUE(c->truncate(s->ref, 100).ok());
  EXPECT_EQ(*c->tokens(s->ref), std::vector<int32_t>(ids.begin(), ids.begin() + 100));
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    EXPECT_NE(c->committed_page(s->ref, int(l), 5), nullptr);
    EXPECT_EQ(c->committed_page(s->ref, int(l), 6), nullptr);
  }
  EXPECT_EQ(c->pool_stats()->blocks_data, 6u * kGeo.n_layers);
  EXPECT_EQ(c->truncate(s->ref, 101).code(), absl::StatusCode::kInvalidArgument);
  // The session grows again from there.
  ASSERT_TRUE(c->append_tokens(s->ref, ids.data() + 100, 30).ok());
  EXPECT_EQ(*c->tokens(s->ref), std::vector<int32_t>(ids.begin(), ids.begin() + 130));
  write(c.get(), "t1", s->ref, 8);
  EXPECT_NE(c->committed_page(s->ref, 2, 7), nullptr);
  ASSERT_TRUE(c->truncate(s->ref, 0).ok());
  EXPECT_EQ(c->pool_stats()->blocks_data, 0u);
  EXPECT_TRUE(c->tokens(s->ref)->empty());
}

// Two workers on one session: the one that opened it last is its writer. The other's offload, token
// ids, truncation and close are refused with FAILED_PRECONDITION and change nothing; what it committed
// before the takeover stays and the new writer reads it; a close without an epoch (the coordinator's)
// still works.
TEST_F(ServiceTest, OnlyTheLastOpenerWritesASession) {
  auto a = client(), b = client();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto sa = a->open_session("fenced", kGeo, true);
  ASSERT_TRUE(sa.ok()) << sa.status();
  write(a.get(), "fenced", sa->ref, 4);
  const std::vector<int32_t> ids = freekv::testing::session_tokens("fenced", 64);
  ASSERT_TRUE(a->append_tokens(sa->ref, ids.data(), 64).ok());

  // A create of an existing session is refused and takes nothing from its writer.
  EXPECT_EQ(b->create_session("fenced", kGeo).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(a->truncate(sa->ref, 64).ok()) << "the create fenced the writer";

  auto sb = b->open_session("fenced", kGeo, false);
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ(sb->ref.epoch, sa->ref.epoch + 1);
  auto expect_fenced = [](const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << what << ": " << s;
    EXPECT_NE(s.message().find("another worker owns it"), std::string::npos) << what << ": " << s;
  };
  expect_fenced(a->pages_for_write(sa->ref, 0, 4, 1).status(), "allocate");
  expect_fenced(a->commit_pages(sa->ref, 0, 0, 1), "commit");
  expect_fenced(a->append_tokens(sa->ref, ids.data(), 8), "append_tokens");
  expect_fenced(a->truncate(sa->ref, 0), "truncate");
  EXPECT_EQ(a->close_session("fenced", sa->ref.epoch).code(), absl::StatusCode::kFailedPrecondition);

  // Nothing of the refused writes landed; the new writer reads and extends what was committed.
  EXPECT_EQ(*b->tokens(sb->ref), ids);
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    recall_and_check(b.get(), "fenced", sb->ref, int(l), {{0, 0}, {1, 3}});
  }
  write(b.get(), "fenced", sb->ref, 6);
  ASSERT_TRUE(b->append_tokens(sb->ref, ids.data(), 8).ok());
  EXPECT_EQ(b->session_stats("fenced")->committed_pages, 6u * kGeo.n_layers);

  // The first worker opening it again takes it back, and the second is fenced in turn.
  auto sa2 = a->open_session("fenced", kGeo, false);
  ASSERT_TRUE(sa2.ok());
  expect_fenced(b->append_tokens(sb->ref, ids.data(), 8), "append_tokens after the takeback");
  ASSERT_TRUE(a->append_tokens(sa2->ref, ids.data(), 8).ok());
  EXPECT_EQ(b->session_stats("fenced")->n_tokens, 64u + 8u + 8u);
  ASSERT_TRUE(b->close_session("fenced").ok());  // no epoch: whoever writes it
  EXPECT_EQ(a->pool_stats()->blocks_data, 0u);
}

TEST_F(ServiceTest, KeyStatisticsComeBackWithoutThePages) {
  auto c = client();
  ASSERT_NE(c, nullptr);
  auto s = c->open_session("k1", kGeo, true);
  ASSERT_TRUE(s.ok()) << s.status();
  // Pages with their key statistics after them: head h of page p of layer l is l·1000 + p·10 + h.
  const size_t stats_floats = kGeo.head_key_stats_bytes() / sizeof(float);
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    auto blocks = c->pages_for_write(s->ref, int(l), 0, 4);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    for (int p = 0; p < 4; ++p) {
      fill_page("k1", int(l), p, (*blocks)[size_t(p)], kGeo.page_bytes());
      auto* stats = reinterpret_cast<float*>((*blocks)[size_t(p)] + kGeo.page_bytes());
      for (uint32_t h = 0; h < kGeo.n_kv_heads; ++h)
        for (size_t i = 0; i < stats_floats; ++i) stats[h * stats_floats + i] = float(l * 1000 + p * 10 + h) + float(i) / 1024;
    }
    ASSERT_TRUE(c->commit_pages(s->ref, int(l), 0, 4).ok());
  }
  const std::vector<RecallItem> items = {{3, 0}, {0, 2}, {1, 3}, {2, 1}};
  auto t = c->post_recall(s->ref, 2, items, RecallMode::kDoubleBuffered, RecallSource::kKeyStats);
  ASSERT_TRUE(t.ok()) << t.status();
  int seen = 0;
  ASSERT_TRUE(c->wait_recall(*t, [&](int64_t i, const uint8_t* bytes) {
                 const auto* f = reinterpret_cast<const float*>(bytes);
                 const RecallItem& it = items[size_t(i)];
                 for (size_t k = 0; k < stats_floats; ++k) {
                   ASSERT_EQ(f[k], float(2000 + it.page * 10 + it.kv_head) + float(k) / 1024) << "item " << i;
                 }
                 ++seen;
               }).ok());
  EXPECT_EQ(seen, 4);
}

TEST_F(ServiceTest, EphemeralSessionsGoWithTheirWorkerAndKeptOnesStay) {
  // A one-off request's session belongs to the worker attachment that made it: when the worker goes
  // (here its client is destroyed; a crash ends the attachment the same way) the kvstore closes it.
  auto a = client();
  auto b = client();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto mine = a->open_session("private-a", kGeo, true, /*ephemeral=*/true);
  ASSERT_TRUE(mine.ok()) << mine.status();
  write(a.get(), "private-a", mine->ref, 3);
  ASSERT_TRUE(a->open_session("kept", kGeo, true).ok());
  ASSERT_TRUE(b->open_session("private-b", kGeo, true, /*ephemeral=*/true).ok());
  const uint64_t used = server_->pool_stats().blocks_used();
  a.reset();
  for (int i = 0; i < 100 && b->session_stats("private-a").ok(); ++i) usleep(10000);
  EXPECT_EQ(b->session_stats("private-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(b->session_stats("kept").ok());
  EXPECT_TRUE(b->session_stats("private-b").ok()) << "another worker's ephemeral session went too";
  EXPECT_LT(server_->pool_stats().blocks_used(), used);
  // Stopping the kvstore detaches every worker: their ephemeral sessions go, kept ones stay. (A kvstore
  // killed outright drops them at its next start: PoolTest.EphemeralSessionsDoNotOutliveAKvstoreCrash.)
  server_.reset();
  start();
  auto c = client();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->session_stats("kept").ok());
  EXPECT_EQ(c->session_stats("private-b").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, AWorkerAskingBeyondALimitIsToldBothNumbersAndTheFlag) {
  KvstoreClient::Options o;
  o.worker_name = "greedy";
  o.staging_pairs = 100;
  auto c = KvstoreClient::connect(socket_, o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  for (const char* part : {"100", "at most 64", "--max-staging-pairs"}) {
    EXPECT_NE(c.status().message().find(part), std::string::npos) << c.status();
  }
  o.staging_pairs = 4;
  o.max_recall_items = 5000;
  c = KvstoreClient::connect(socket_, o);
  ASSERT_FALSE(c.ok());
  for (const char* part : {"5000", "at most 4096", "--max-recall-items"}) {
    EXPECT_NE(c.status().message().find(part), std::string::npos) << c.status();
  }
  const v1::WorkerLimits limits = server_->pool_stats().worker_limits();
  EXPECT_EQ(limits.max_staging_pairs(), 64u);
  EXPECT_EQ(limits.max_recall_items(), 4096u);
  EXPECT_EQ(limits.max_worker_staging_bytes(), 256ull << 20);
}

TEST_F(ServiceTest, AGpuWorkerIsRefusedWithTheFlagWhenThePoolIsNotRegisteredWithCuda) {
  // The CUDA push reads the pool as mapped memory; this server runs with --cuda-register off (as every
  // server on a host without a GPU effectively does), so a worker offering device staging is refused
  // before anything is opened, with what to do, and the server keeps serving CPU workers.
  auto channel = grpc::CreateChannel(opts_.listen, grpc::InsecureChannelCredentials());
  auto stub = v1::KvStore::NewStub(channel);
  v1::AttachWorkerRequest req;
  req.set_worker_name("gpu");
  req.set_staging_pairs(2);
  req.set_staging_buffer_bytes(16 << 10);
  req.set_max_recall_items(64);
  req.set_cuda_staging_handle(std::string(64, '\1'));
  for (int i = 0; i < 4; ++i) req.add_cuda_event_handles(std::string(64, '\2'));
  grpc::ClientContext ctx;
  auto reader = stub->AttachWorker(&ctx, req);
  v1::AttachWorkerResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  const grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  for (const char* part : {"not registered with CUDA", "--cuda-register"}) {
    EXPECT_NE(st.error_message().find(part), std::string::npos) << st.error_message();
  }
  EXPECT_NE(client(), nullptr);
}

TEST_F(ServiceTest, ADeviceStagingRequestWithoutStagingSizesIsRefusedBeforeAttaching) {
  // Device staging is allocated before attaching, so its size cannot be left to the kvstore's default.
  KvstoreClient::Options o;
  o.worker_name = "gpu";
  o.cuda_device = 0;
  auto c = KvstoreClient::connect(socket_, o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("staging_pairs and staging_buffer_bytes"), std::string::npos) << c.status();
  EXPECT_EQ(server_->pool_stats().workers(), 0u);
}

TEST_F(ServiceTest, SeveralRecallsInFlightWaitedInAnyOrder) {
  auto c = client(/*pairs=*/3, /*buffer=*/8 << 10);
  auto a = c->open_session("a", kGeo, true);
  auto b = c->open_session("b", kGeo, true);
  ASSERT_TRUE(a.ok() && b.ok());
  write(c.get(), "a", a->ref, 12);
  write(c.get(), "b", b->ref, 12);
  std::mt19937 rng(3);
  for (int round = 0; round < 5; ++round) {
    const auto i0 = random_items(rng, 12, 25), i1 = random_items(rng, 12, 30), i2 = random_items(rng, 12, 9);
    auto t0 = c->post_recall(a->ref, 0, i0);
    auto t1 = c->post_recall(b->ref, 1, i1);
    auto t2 = c->post_recall(a->ref, 2, i2);
    ASSERT_TRUE(t0.ok() && t1.ok() && t2.ok());
    auto extra = c->post_recall(a->ref, 0, i0);
    EXPECT_EQ(extra.status().code(), absl::StatusCode::kFailedPrecondition);  // all pairs busy
    // A synchronous request in between: its completion is told apart from the recalls' by seq.
    ASSERT_TRUE(c->page_for_write(b->ref, 0, 100).ok());
    ASSERT_TRUE(c->discard_pages(b->ref, 0, 100, 1).ok());
    auto check = [&](uint64_t t, const std::string& id, int layer, const std::vector<RecallItem>& items) {
      int64_t next = 0;
      absl::Status s = c->wait_recall(t, [&](int64_t i, const uint8_t* chunk) {
        ASSERT_EQ(i, next++);
        ASSERT_EQ(check_chunk(id, layer, items[size_t(i)].page, items[size_t(i)].kv_head, kGeo.chunk_bytes(),
                              kGeo.page_bytes(), chunk),
                  -1);
      });
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_EQ(next, int64_t(items.size()));
    };
    check(*t2, "a", 2, i2);
    check(*t0, "a", 0, i0);
    check(*t1, "b", 1, i1);
  }
  EXPECT_EQ(c->wait_recall(12345, [](int64_t, const uint8_t*) {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServiceTest, BadRequestsGetClearErrors) {
  auto c = client();
  auto s = c->open_session("s", kGeo, true);
  ASSERT_TRUE(s.ok());
  write(c.get(), "s", s->ref, 4);
  auto expect_recall_error = [&](SessionRef ref, int layer, std::vector<RecallItem> items, absl::StatusCode code,
                                 const std::string& text) {
    auto t = c->post_recall(ref, layer, items);
    absl::Status st = t.ok() ? c->wait_recall(*t, [](int64_t, const uint8_t*) { FAIL() << "no chunk expected"; })
                             : t.status();
    EXPECT_EQ(st.code(), code) << st;
    EXPECT_NE(st.message().find(text), std::string::npos) << st;
  };
  expect_recall_error(s->ref, 0, {{0, 1}, {0, 4}}, absl::StatusCode::kInvalidArgument, "page 4 of layer 0 is not committed");
  expect_recall_error(s->ref, 0, {{4, 0}}, absl::StatusCode::kInvalidArgument, "kv_head 4 is out of range");
  expect_recall_error(s->ref, 0, {{0, 4000000000u}}, absl::StatusCode::kInvalidArgument, "beyond the page table");
  expect_recall_error(s->ref, 3, {{0, 0}}, absl::StatusCode::kInvalidArgument, "layer 3 is out of range");
  std::vector<RecallItem> too_many(c->max_recall_items() + 1);
  expect_recall_error(s->ref, 0, too_many, absl::StatusCode::kInvalidArgument, "exceeds");
  SessionRef stale = s->ref;
  stale.generation += 1000;
  expect_recall_error(stale, 0, {{0, 0}}, absl::StatusCode::kNotFound, "closed or unknown");

  EXPECT_EQ(c->commit_page(s->ref, 0, 9).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->page_for_write(s->ref, 5, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->page_for_write(stale, 0, 0).status().code(), absl::StatusCode::kNotFound);
  const int32_t neg[2] = {1, -1};
  EXPECT_EQ(c->append_tokens(s->ref, neg, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->open_session("nope", kGeo, false).status().code(), absl::StatusCode::kNotFound);
  KvSessionGeometry other = kGeo;
  other.n_layers = 5;
  auto mismatch = c->open_session("s", other, true);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("layers 3 vs 5"), std::string::npos) << mismatch.status();
  KvSessionGeometry huge{1, 64, 128, 32, DType::kF32};
  EXPECT_EQ(c->open_session("huge", huge, true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->close_session("nope").code(), absl::StatusCode::kNotFound);

  // Nothing above disturbed the session.
  std::mt19937 rng(1);
  recall_and_check(c.get(), "s", s->ref, 2, random_items(rng, 4, 16));
  // A closed session's handle is dead.
  ASSERT_TRUE(c->close_session("s").ok());
  EXPECT_EQ(c->committed_page(s->ref, 0, 0), nullptr);
  EXPECT_EQ(c->tokens(s->ref).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->post_recall(s->ref, 0, {{0, 0}}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, PoolFullFailsOnlyTheRequester) {
  auto c = client();
  auto keep = c->open_session("keep", kGeo, true);
  auto hog = c->open_session("hog", kGeo, true);
  ASSERT_TRUE(keep.ok() && hog.ok());
  write(c.get(), "keep", keep->ref, 3);
  absl::Status last;
  for (int64_t p = 0;; ++p) {
    auto b = c->page_for_write(hog->ref, 0, p);
    if (!b.ok()) {
      last = b.status();
      break;
    }
    ASSERT_TRUE(c->commit_page(hog->ref, 0, p).ok());
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  std::mt19937 rng(2);
  recall_and_check(c.get(), "keep", keep->ref, 1, random_items(rng, 3, 20));
  ASSERT_TRUE(c->close_session("hog").ok());
  write(c.get(), "keep", keep->ref, 6);
}

TEST_F(ServiceTest, DetachingReturnsUncommittedBlocks) {
  {
    auto c = client();
    auto s = c->open_session("s", kGeo, true);
    ASSERT_TRUE(s.ok());
    write(c.get(), "s", s->ref, 2);
    ASSERT_TRUE(c->pages_for_write(s->ref, 0, 10, 5).ok());
    EXPECT_EQ(counters().blocks_pending, 5u);
  }
  const int64_t end = freekv::testing::now_ms() + 5000;
  while (counters().blocks_pending != 0 && freekv::testing::now_ms() < end) usleep(10000);
  EXPECT_EQ(counters().blocks_pending, 0u);
  EXPECT_EQ(counters().blocks_data, 2u * kGeo.n_layers);
  // Another worker takes the session over: pages and tokens are there.
  auto c2 = client();
  auto s = c2->open_session("s", kGeo, false);
  ASSERT_TRUE(s.ok());
  std::mt19937 rng(5);
  recall_and_check(c2.get(), "s", s->ref, 0, random_items(rng, 2, 10));
}

TEST_F(ServiceTest, ACorruptWorkerDoesNotHurtOthers) {
  auto good = client();
  auto bad = client();
  auto s = good->open_session("s", kGeo, true);
  ASSERT_TRUE(s.ok());
  write(good.get(), "s", s->ref, 2);
  // The bad worker scribbles on its request ring (a tail far beyond the head).
  {
    auto b = bad->open_session("s", kGeo, false);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(bad->page_for_write(b->ref, 0, 50).ok());
  }
  auto shm_names = server_->pool()->name();
  // Find the bad worker's channel through its own mapping: worker ids are 1 and 2.
  std::string channel;
  for (const char* e : {".ch2."}) {
    DIR* d = opendir("/dev/shm");
    while (dirent* de = readdir(d)) {
      std::string n = de->d_name;
      if (n.rfind(shm_names + e, 0) == 0) channel = n;
    }
    closedir(d);
  }
  ASSERT_FALSE(channel.empty());
  {
    auto shm = SharedMemory::open(channel, true);
    ASSERT_TRUE(shm.ok());
    auto* h = reinterpret_cast<dp::ChannelHeader*>((*shm)->data());
    auto* ctl = reinterpret_cast<RingControl*>((*shm)->data() + h->request_ring_offset);
    ctl->tail.store(ctl->tail.load() + 100000);
    ctl->data.seq.fetch_add(1);
    Doorbell::futex_wake_all(&ctl->data.seq);
    // The kvstore notices and stops serving that channel (and only that one).
    const int64_t end = freekv::testing::now_ms() + 5000;
    while (h->state.load() != dp::kChannelBroken && freekv::testing::now_ms() < end) usleep(1000);
    ASSERT_EQ(h->state.load(), uint32_t(dp::kChannelBroken));
  }
  auto b2 = bad->open_session("s", kGeo, false);
  ASSERT_TRUE(b2.ok());
  auto r = bad->page_for_write(b2->ref, 0, 51);
  EXPECT_FALSE(r.ok());
  std::mt19937 rng(9);
  recall_and_check(good.get(), "s", s->ref, 0, random_items(rng, 2, 12));
  bad.reset();
  const int64_t end = freekv::testing::now_ms() + 5000;
  while (counters().blocks_pending != 0 && freekv::testing::now_ms() < end) usleep(10000);
  EXPECT_EQ(counters().blocks_pending, 0u);
}

TEST_F(ServiceTest, RefusesASecondServerOnTheSocketAndRestartsOnThePool) {
  auto c = client();
  auto s = c->open_session("s", kGeo, true);
  ASSERT_TRUE(s.ok());
  write(c.get(), "s", s->ref, 3);
  const std::vector<int32_t> ids = {5, 6, 7};
  ASSERT_TRUE(c->append_tokens(s->ref, ids.data(), 3).ok());
  kvstore::ServerOptions o2 = opts_;
  o2.pool.name = unique_name("svc2");
  auto second = kvstore::KvstoreServer::start(o2);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("listening"), std::string::npos) << second.status();
  SharedMemory::unlink(o2.pool.name).IgnoreError();
  c.reset();
  server_.reset();
  start();
  auto c2 = client();
  auto s2 = c2->open_session("s", kGeo, false);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->ref.generation, s->ref.generation);
  EXPECT_EQ(s2->n_tokens, 3u);
  EXPECT_EQ(*c2->tokens(s2->ref), ids);
  std::mt19937 rng(4);
  recall_and_check(c2.get(), "s", s2->ref, 2, random_items(rng, 3, 24));
}

}  // namespace
}  // namespace freekv
