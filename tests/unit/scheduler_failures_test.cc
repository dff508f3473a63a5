// A failure inside a batched step fails only the sequence it belongs to (DESIGN §5): the kvstore runs
// out of blocks while three requests step together; the one that needed the space ends
// RESOURCE_EXHAUSTED and its new session goes back to holding nothing, while the other two finish with
// exactly the tokens they produce alone and their sessions hold their prompt and generated ids once.
#include <gtest/gtest.h>

#include "test_models.h"
#include "tools/kvstore_process.h"
#include "worker/engine/scheduler.h"

namespace freekv {
namespace {

const TinyModel kModel = {"sched-failures", ModelArch::kLlama, 2, 128, 4, 2, 32, 128};
constexpr int64_t kPt = 8;

std::vector<int32_t> prompt_of(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(int32_t((i * 31 + salt * 7 + 3) % 250));
  return p;
}

TEST(SchedulerFailures, KvstoreFullMidBatchFailsOnlyTheSequenceThatNeededTheSpace) {
  auto kvstore = KvstoreProcess::start("16MiB", "4KiB");
  ASSERT_TRUE(kvstore.ok()) << kvstore.status();
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = kPt;
  o.prefill_chunk = 16;
  o.retrieval.policy = PolicyKind::kFreekv;
  o.retrieval.budget = 64;
  o.retrieval.sink = 16;
  o.retrieval.recent = 32;
  o.kvstore_socket = (*kvstore)->socket_path();
  auto engine = Engine::load(tiny_model_dir(kModel), o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  KvstoreClient& kv = *(*engine)->kvstore();

  // A one-layer hog session takes the whole pool, then gives back just enough for the test.
  const KvSessionGeometry hog_geometry{1, 2, 32, uint32_t(kPt), DType::kBF16};
  auto hog = kv.open_session("hog", hog_geometry, true);
  ASSERT_TRUE(hog.ok()) << hog.status();
  const auto stats0 = kv.pool_stats();
  ASSERT_TRUE(stats0.ok());
  std::vector<int32_t> hog_ids(size_t(stats0->blocks_total * kPt), 1);
  ASSERT_TRUE(kv.append_tokens(hog->ref, hog_ids.data(), int64_t(hog_ids.size())).ok());
  int64_t hog_pages = 0;
  while (true) {
    auto blocks = kv.pages_for_write(hog->ref, 0, hog_pages, 1);
    if (!blocks.ok()) {
      ASSERT_EQ(blocks.status().code(), absl::StatusCode::kResourceExhausted) << blocks.status();
      break;
    }
    ASSERT_TRUE(kv.commit_pages(hog->ref, 0, hog_pages, 1).ok());
    ++hog_pages;
  }
  // Requests a and b (24-token prompts: 3 pages of 2 layers, plus an index and a token block each) need
  // 8 blocks each; c (120 tokens) needs 6 for its first chunk and 10 after its second.
  uint64_t free_blocks = 0;
  for (int64_t keep = hog_pages; free_blocks < 24; --keep) {
    ASSERT_TRUE(kv.truncate(hog->ref, uint64_t(keep * kPt)).ok());
    free_blocks = kv.pool_stats()->blocks_free;
  }
  ASSERT_LE(free_blocks, 25u);

  Scheduler scheduler(engine->get(), SchedulerOptions{});
  auto submit = [&](const std::string& session, const std::vector<int32_t>& prompt, int max_tokens) {
    GenerateRequest r;
    r.prompt = prompt;
    r.session_id = session;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    auto job = scheduler.submit(std::move(r));
    EXPECT_TRUE(job.ok()) << job.status();
    return *job;
  };
  auto wait_done = [](Job& job) {
    while (!job.done()) job.wait(Job::Clock::now() + std::chrono::milliseconds(20));
  };
  const auto pa = prompt_of(24, 1), pb = prompt_of(24, 2), pc = prompt_of(120, 3);
  auto a = submit("a", pa, 7), b = submit("b", pb, 7);
  // c joins once a and b have their pages (their first token is out), while they still decode.
  for (Job* j : {a.get(), b.get()}) {
    std::vector<int32_t> got;
    std::string text;
    while (got.empty() && !j->done()) {
      j->wait(Job::Clock::now() + std::chrono::milliseconds(5));
      j->take(&got, &text);
    }
  }
  auto c = submit("c", pc, 7);
  wait_done(*a);
  wait_done(*b);
  wait_done(*c);
  ASSERT_TRUE(a->result().ok()) << a->result().status();
  ASSERT_TRUE(b->result().ok()) << b->result().status();
  EXPECT_EQ(c->result().status().code(), absl::StatusCode::kResourceExhausted) << c->result().status();
  EXPECT_NE(c->result().status().message().find("pool full"), std::string::npos) << c->result().status();

  // c's new session holds nothing; a's and b's hold their prompt and every generated id, once.
  auto info_c = kv.open_session("c", session_geometry((*engine)->kv_pool().geometry()), false);
  ASSERT_TRUE(info_c.ok()) << info_c.status();
  EXPECT_EQ(info_c->n_tokens, 0u);
  EXPECT_EQ(info_c->committed_pages, 0u);
  EXPECT_EQ(c->session_tokens(), 0);
  for (auto [job, prompt, id] : {std::tuple{a.get(), pa, "a"}, std::tuple{b.get(), pb, "b"}}) {
    auto info = kv.open_session(id, session_geometry((*engine)->kv_pool().geometry()), false);
    ASSERT_TRUE(info.ok());
    auto stored = kv.tokens(info->ref);
    ASSERT_TRUE(stored.ok());
    std::vector<int32_t> want = prompt;
    want.insert(want.end(), job->result()->tokens.begin(), job->result()->tokens.end());
    EXPECT_EQ(*stored, want) << "session " << id;
    EXPECT_EQ(job->session_tokens(), int64_t(want.size()));
  }
  // With the space back, each request alone produces the same tokens.
  ASSERT_TRUE(kv.close_session("hog").ok());
  for (auto [job, prompt] : {std::pair{a.get(), pa}, std::pair{b.get(), pb}}) {
    GenerateRequest r;
    r.prompt = prompt;
    r.max_tokens = 7;
    r.ignore_eos = true;
    auto alone = (*engine)->generate(r, nullptr);
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ(alone->tokens, job->result()->tokens);
  }
}

}  // namespace
}  // namespace freekv
