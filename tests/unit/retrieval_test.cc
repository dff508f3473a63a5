// Retrieval (DESIGN §6, layer 3): selection by membership, the five policies' equivalence with full
// attention when the budget covers the context, freekv with τ = 1 against arkvale, a planted needle,
// and byte-exact recall over a long batched generation. Offloading policies run against a real
// freekv-kvstore process started for this test binary.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "test_models.h"
#include "tools/kvstore_process.h"
#include "worker/engine/generate.h"
#include "worker/retrieval/selection.h"

namespace freekv {
namespace {

// ---- selection ----

TEST(Selection, TopKBreaksTiesTowardTheLowerPage) {
  std::vector<float> scores = {1.f, 3.f, 3.f, 2.f, 3.f};
  EXPECT_EQ(top_k_pages(scores, 10, 2), (std::vector<int32_t>{11, 12}));
  EXPECT_EQ(top_k_pages(scores, 10, 9), (std::vector<int32_t>{10, 11, 12, 13, 14}));
}

TEST(Selection, VictimsAreChosenByMembershipNotScore) {
  // Slots hold pages 4, 7, 9 and one is empty; the new selection is {7, 12, 15}: page 7 stays where it
  // is, the empty slot is used first, then a slot whose page (4 or 9) was not selected.
  std::vector<int32_t> slots = {4, 7, -1, 9};
  auto updates = plan_slot_updates(slots, {7, 12, 15});
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].slot, 2);
  EXPECT_EQ(updates[0].page, 12);
  EXPECT_TRUE(updates[1].slot == 0 || updates[1].slot == 3);
  EXPECT_EQ(updates[1].page, 15);
  EXPECT_TRUE(plan_slot_updates({3, 5}, {5, 3}).empty());
}

TEST(Selection, GroupScoresAverageRawOrSoftmaxed) {
  // Two query heads, two pages, head_dim 1: digests U = L = (1) and (2); q = (1) and (-1).
  const float q[] = {1.f, -1.f};
  const float digests[] = {1.f, 1.f, 2.f, 2.f};
  auto avg = score_candidates(q, 2, digests, 0, 2, 1, GqaScore::kAvg);
  EXPECT_FLOAT_EQ(avg[0], 0.f);  // (1 + -1) / 2
  EXPECT_FLOAT_EQ(avg[1], 0.f);  // (2 + -2) / 2
  auto sm = score_candidates(q, 2, digests, 0, 2, 1, GqaScore::kAvgSoftmax);
  EXPECT_NEAR(sm[0] + sm[1], 1.f, 1e-6);  // mean of two distributions over the pages
  EXPECT_NEAR(sm[0], 0.5f, 1e-6);         // symmetric: each head prefers a different page
}

// ---- policies over a real kvstore ----

class PolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto p = KvstoreProcess::start("512MiB", "64KiB");
    ASSERT_TRUE(p.ok()) << p.status();
    kvstore_ = p->release();
  }
  static void TearDownTestSuite() {
    delete kvstore_;
    kvstore_ = nullptr;
  }

  static std::unique_ptr<Engine> engine(PolicyKind policy, int64_t budget, double tau = 0.9, const TinyModel& model = kModel,
                                        bool attend_beyond_window = false) {
    EngineOptions o;
    o.threads = 2;
    o.page_tokens = 8;
    o.prefill_chunk = 32;
    o.kv_memory = 256ull << 20;
    o.retrieval.policy = policy;
    o.retrieval.budget = budget;
    o.retrieval.sink = 16;
    o.retrieval.recent = 32;
    o.retrieval.correction_threshold = tau;
    o.kvstore_socket = kvstore_->socket_path();
    o.attend_beyond_window = attend_beyond_window;
    auto e = Engine::load(tiny_model_dir(model), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  static GenerateResult generate(Engine& e, int prompt_len, int max_tokens, std::vector<int32_t> forced = {}) {
    GenerateRequest r;
    for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(int32_t((i * 131 + 7) % 397));
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.keep_logits = true;
    r.forced_tokens = std::move(forced);
    auto out = e.generate(r, nullptr);
    EXPECT_TRUE(out.ok()) << out.status();
    return *out;
  }

  static double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
  }

  static constexpr TinyModel kModel = {"retrieval", ModelArch::kLlama, 2, 128, 8, 2, 64, 256};
  static KvstoreProcess* kvstore_;
};
KvstoreProcess* PolicyTest::kvstore_ = nullptr;

TEST_F(PolicyTest, EveryPolicyEqualsFullWhenTheBudgetCoversTheContext) {
  // 100 prompt + 40 generated tokens in 8-token pages; a 160-token budget selects every middle page,
  // so each policy attends exactly what full attends — through selection and slots for quest, arkvale
  // and freekv (nothing is ever evicted, so nothing needs recalling: the recall path is covered by the
  // tests below). Streaming's window is the whole budget after the sinks, so it never leaves full.
  GenerateResult ref = generate(*engine(PolicyKind::kFull, 160), 100, 40);
  for (PolicyKind p : {PolicyKind::kStreaming, PolicyKind::kQuest, PolicyKind::kArkvale, PolicyKind::kFreekv}) {
    GenerateResult got = generate(*engine(p, 160), 100, 40, ref.tokens);
    const double d = max_diff(got.logits, ref.logits);
    std::printf("%s vs full, budget >= context: max abs logit diff %.3g, %lld pages recalled, %lld selection steps\n",
                policy_name(p), d, (long long)got.stats.retrieval.pages_recalled,
                (long long)got.stats.retrieval.selection_steps);
    EXPECT_LT(d, 1e-3) << policy_name(p);
    EXPECT_EQ(got.tokens, ref.tokens) << policy_name(p);
    if (p != PolicyKind::kStreaming) {
      EXPECT_GT(got.stats.retrieval.selection_steps, 0) << policy_name(p) << " never used its budget path";
    }
  }
}

// A windowed layer attends the model's window whatever the policy (worker/retrieval/policy.h): on a
// model whose every layer has a 40-token window, each policy with a budget far below the context
// generates what full does, selecting nothing; on one whose second layer only has the window, the
// selecting policies select in the first layer only (half the selection steps of the unwindowed model),
// so some layers follow the policy and some the window in the same step. Attending the whole context
// instead (attend_beyond_window) changes the logits: the window is really applied.
TEST_F(PolicyTest, WindowedLayersAttendTheirWindowUnderEveryPolicy) {
  constexpr TinyModel kAllWindowed = {"retrieval-window40", ModelArch::kMistral, 2, 128, 8, 2, 64, 256, false, 40};
  constexpr TinyModel kLastWindowed = {"retrieval-window40-last", ModelArch::kMistral, 2, 128, 8, 2, 64, 256, false, 40, 1};
  constexpr TinyModel kUnwindowed = {"retrieval-mistral", ModelArch::kMistral, 2, 128, 8, 2, 64, 256};
  auto full = engine(PolicyKind::kFull, 64, 0.9, kAllWindowed);
  EXPECT_EQ(full->weights().config.context_limit(), full->weights().config.max_positions) << "the CPU attends the windows";
  GenerateResult ref = generate(*full, 100, 40);
  for (PolicyKind p : {PolicyKind::kStreaming, PolicyKind::kQuest, PolicyKind::kArkvale, PolicyKind::kFreekv}) {
    GenerateResult got = generate(*engine(p, 64, 0.9, kAllWindowed), 100, 40, ref.tokens);
    const double d = max_diff(got.logits, ref.logits);
    std::printf("%s vs full, every layer windowed: max abs logit diff %.3g\n", policy_name(p), d);
    EXPECT_LT(d, 1e-3) << policy_name(p);
    EXPECT_EQ(got.tokens, ref.tokens) << policy_name(p);
    EXPECT_EQ(got.stats.retrieval.selection_steps, 0) << policy_name(p) << " selected in a windowed layer";
  }
  GenerateResult whole = generate(*engine(PolicyKind::kFull, 64, 0.9, kAllWindowed, /*attend_beyond_window=*/true), 100, 40,
                                  ref.tokens);
  EXPECT_GT(max_diff(whole.logits, ref.logits), 1e-2) << "attending the whole context changed nothing: no window applied";

  for (PolicyKind p : {PolicyKind::kQuest, PolicyKind::kArkvale, PolicyKind::kFreekv}) {
    const GenerateResult mixed = generate(*engine(p, 64, 0.9, kLastWindowed), 100, 40);
    const GenerateResult plain = generate(*engine(p, 64, 0.9, kUnwindowed), 100, 40);
    EXPECT_GT(mixed.stats.retrieval.selection_steps, 0) << policy_name(p);
    EXPECT_EQ(2 * mixed.stats.retrieval.selection_steps, plain.stats.retrieval.selection_steps) << policy_name(p);
  }
}

// A windowed layer's pages before its window leave the worker once offloaded; a session resumed on
// another engine brings the window's pages back from the kvstore and continues as one uninterrupted
// generation does (teacher-forced logits over the same tokens).
TEST_F(PolicyTest, AWindowedSessionResumesFromTheKvstore) {
  constexpr TinyModel kAllWindowed = {"retrieval-window40", ModelArch::kMistral, 2, 128, 8, 2, 64, 256, false, 40};
  GenerateRequest first;
  for (int i = 0; i < 90; ++i) first.prompt.push_back(int32_t((i * 131 + 7) % 397));
  first.max_tokens = 30;
  first.ignore_eos = true;
  first.session_id = "windowed-resume";
  auto a = engine(PolicyKind::kFreekv, 64, 0.9, kAllWindowed)->generate(first, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  GenerateRequest second;
  second.prompt = {11, 12, 13};
  second.max_tokens = 25;
  second.ignore_eos = true;
  second.keep_logits = true;
  second.session_id = "windowed-resume";
  auto b = engine(PolicyKind::kFreekv, 64, 0.9, kAllWindowed)->generate(second, nullptr);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(b->stats.reused_tokens, 100) << "the session's pages were not reused";

  GenerateRequest whole;
  whole.prompt = first.prompt;
  whole.prompt.insert(whole.prompt.end(), a->tokens.begin(), a->tokens.end());
  whole.prompt.insert(whole.prompt.end(), second.prompt.begin(), second.prompt.end());
  whole.max_tokens = 25;
  whole.ignore_eos = true;
  whole.keep_logits = true;
  whole.forced_tokens = b->tokens;
  auto ref = engine(PolicyKind::kFull, 64, 0.9, kAllWindowed)->generate(whole, nullptr);
  ASSERT_TRUE(ref.ok()) << ref.status();
  // Logits come for every token fed: the resumed turn's are the last rows of the whole run's.
  ASSERT_LT(b->logits.size(), ref->logits.size());
  const std::vector<float> tail(ref->logits.end() - long(b->logits.size()), ref->logits.end());
  EXPECT_LT(max_diff(b->logits, tail), 1e-3);
  auto client = KvstoreClient::connect(kvstore_->socket_path());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->close_session("windowed-resume").ok());
}

TEST_F(PolicyTest, FreekvAlwaysCorrectingEqualsArkvale) {
  // A 64-token budget over 140 tokens: two selected pages per head out of up to 11 candidates.
  GenerateResult ark = generate(*engine(PolicyKind::kArkvale, 64), 100, 40);
  GenerateResult fkv = generate(*engine(PolicyKind::kFreekv, 64, /*tau=*/1.0), 100, 40, ark.tokens);
  const double d = max_diff(fkv.logits, ark.logits);
  std::printf("freekv (tau = 1) vs arkvale: max abs logit diff %.3g, corrections %lld of %lld checks, pages recalled %lld vs %lld\n",
              d, (long long)fkv.stats.retrieval.correction_triggers, (long long)fkv.stats.retrieval.correction_checks,
              (long long)fkv.stats.retrieval.pages_recalled, (long long)ark.stats.retrieval.pages_recalled);
  EXPECT_LT(d, 1e-3);
  EXPECT_GT(ark.stats.retrieval.pages_recalled, 0);
  EXPECT_GT(fkv.stats.retrieval.pages_recalled, 0);
  EXPECT_GT(fkv.stats.retrieval.correction_checks, 0);
  EXPECT_EQ(fkv.stats.retrieval.correction_triggers, fkv.stats.retrieval.correction_checks);
  // And with a small budget the policies really differ from full (the comparison above is not vacuous).
  GenerateResult full = generate(*engine(PolicyKind::kFull, 64), 100, 40, ark.tokens);
  EXPECT_GT(max_diff(full.logits, ark.logits), 1e-2);
}

// A needle: one page per KV head (different pages for the two heads) whose keys align with the query
// and whose values are a marker; every other key is small noise. Attention over the budget must pick
// the needle's values up under quest, arkvale and freekv, and cannot under streaming.
class NeedleTest : public PolicyTest {
 protected:
  static constexpr int64_t kHd = 64, kPt = 8, kPages = 40, kHeads = 4, kKvHeads = 2;
  static constexpr int64_t kNeedle[2] = {17, 23};

  // Fills the sequence with kPages pages of one layer, committed (offloaded and digested).
  static void fill(Sequence& seq, const std::vector<float>& dir0, const std::vector<float>& dir1) {
    std::mt19937 rng(9);
    std::normal_distribution<float> noise(0.f, 0.05f);
    TieredKv& kv = seq.kv();
    ASSERT_TRUE(kv.reserve(kPages * kPt).ok());
    std::vector<float> row(static_cast<size_t>(kHd));
    for (int64_t t = 0; t < kPages * kPt; ++t) {
      for (int64_t h = 0; h < kKvHeads; ++h) {
        const bool needle = t / kPt == kNeedle[h];
        const auto& dir = h == 0 ? dir0 : dir1;
        for (int64_t i = 0; i < kHd; ++i) row[size_t(i)] = needle ? 4.f * dir[size_t(i)] : noise(rng);
        store_row(kv.k_row(0, h, t), row);
        for (int64_t i = 0; i < kHd; ++i) row[size_t(i)] = needle ? 1.f : 0.f;  // marker value
        store_row(kv.v_row(0, h, t), row);
      }
    }
    std::vector<int32_t> ids(static_cast<size_t>(kPages * kPt), 1);
    ASSERT_TRUE(kv.commit(ids.data(), kPages * kPt).ok());
  }

  static void store_row(uint8_t* dst, const std::vector<float>& row) {
    for (size_t i = 0; i < row.size(); ++i) store_from_f32(dst, DType::kBF16, i, row[i]);
  }

  // One decode step of the single layer with query q [kHeads, kHd]; returns the mean attention output
  // of each KV head's group (≈ 1 when the needle page was attended, ≈ 0 otherwise).
  static std::vector<float> step(Sequence& seq, const std::vector<float>& q, ThreadPool& pool) {
    TieredKv& kv = seq.kv();
    EXPECT_TRUE(kv.reserve(1).ok());
    std::vector<float> zero(static_cast<size_t>(kHd), 0.f);
    for (int64_t h = 0; h < kKvHeads; ++h) {
      store_row(kv.k_row(0, h, kv.n_tokens()), zero);
      store_row(kv.v_row(0, h, kv.n_tokens()), zero);
    }
    std::vector<float> out(q.size());
    auto plan = seq.attend(0, q.data(), 1, 1.f / 8, out.data(), pool);
    EXPECT_TRUE(plan.ok()) << plan.status();
    const int32_t id = 1;
    EXPECT_TRUE(kv.commit(&id, 1).ok());
    std::vector<float> mean(kKvHeads, 0.f);
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t i = 0; i < kHd; ++i) mean[size_t(h / 2)] += out[size_t(h * kHd + i)] / (2 * kHd);
    return mean;
  }

  static std::vector<float> unit(int64_t axis) {
    std::vector<float> v(static_cast<size_t>(kHd), 0.f);
    v[size_t(axis)] = 1.f;
    return v;
  }
};

TEST_F(NeedleTest, SelectingPoliciesFindThePlantedPageAndStreamingCannot) {
  KvGeometry g{1, kKvHeads, kHd, kPt, DType::kBF16};
  KvBlockPool pool(g, 64ull << 20);
  ThreadPool threads(2);
  auto client = KvstoreClient::connect(kvstore_->socket_path());
  ASSERT_TRUE(client.ok()) << client.status();
  RecallQueue recalls(client->get());
  const auto d0 = unit(3), d1 = unit(40);
  // Query heads 0, 1 read KV head 0 and look along d0; heads 2, 3 read KV head 1 and look along d1.
  std::vector<float> q;
  for (int64_t h = 0; h < kHeads; ++h) {
    const auto& d = h < 2 ? d0 : d1;
    for (float x : d) q.push_back(16.f * x);  // q·k = 8 on needle keys after the 1/8 scale: e^8 dominates
  }
  int session = 0;
  for (PolicyKind p : {PolicyKind::kStreaming, PolicyKind::kQuest, PolicyKind::kArkvale, PolicyKind::kFreekv}) {
    RetrievalConfig rc;
    rc.policy = p;
    rc.sink = 8;
    rc.recent = 16;
    rc.budget = 40;  // 2 selected pages of 38 candidates
    auto info = (*client)->open_session("needle-" + std::to_string(session++), session_geometry(g), true);
    ASSERT_TRUE(info.ok()) << info.status();
    Sequence seq(&pool, KvStoreBinding{&recalls, info->ref}, rc, kHeads, &threads);
    fill(seq, d0, d1);
    for (int s = 0; s < 3; ++s) {  // freekv: a synchronous first step, then speculative ones
      std::vector<float> mean = step(seq, q, threads);
      for (int64_t h = 0; h < kKvHeads; ++h) {
        if (p == PolicyKind::kStreaming) {
          EXPECT_LT(mean[size_t(h)], 0.05f) << "streaming attended a page outside sinks and window";
        } else {
          EXPECT_GT(mean[size_t(h)], 0.95f) << policy_name(p) << " missed the needle of KV head " << h << " at step " << s;
        }
      }
    }
    if (p == PolicyKind::kFreekv) {
      const RetrievalStats st = seq.total_stats();
      EXPECT_EQ(st.correction_triggers, 0) << "the query did not move, so no head needed correction";
      EXPECT_GT(st.correction_checks, 0);
    }
    ASSERT_TRUE(seq.drain().ok());
    ASSERT_TRUE((*client)->close_session("needle-" + std::to_string(session - 1)).ok());
  }
}

// ---- byte-exact recall under concurrency ----

TEST_F(PolicyTest, RecalledChunksEqualOffloadedBytesOverALongBatchedGeneration) {
  auto e = engine(PolicyKind::kFreekv, 64, /*tau=*/0.5);
  const KvGeometry& g = e->kv_pool().geometry();
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<int32_t>> prompts = {{}, {}, {}};
  // Prompts within sinks + window (48 tokens): every page completes during decode and is captured while
  // it is still in the window, before it leaves the worker.
  const int lengths[] = {20, 33, 45};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < lengths[s]; ++i) prompts[size_t(s)].push_back(int32_t((i * 17 + s * 5) % 397));
    seqs.push_back(*e->new_sequence("bytes-" + std::to_string(s)));
  }
  // shadow[s][(layer, page)] = the block as written, captured while the page is still resident.
  std::vector<std::map<std::pair<int64_t, int64_t>, std::string>> shadow(3);
  auto capture = [&](int s) {
    TieredKv& kv = seqs[size_t(s)]->kv();
    for (int64_t l = 0; l < g.n_layers; ++l) {
      for (int64_t p = 0; p < kv.n_tokens() / g.page_tokens; ++p) {
        if (shadow[size_t(s)].count({l, p}) != 0) continue;
        const uint8_t* b = kv.local_block(l, p);
        ASSERT_NE(b, nullptr) << "page " << p << " was released before it could be checked";
        shadow[size_t(s)][{l, p}] = std::string(reinterpret_cast<const char*>(b), g.block_bytes());
      }
    }
  };
  std::vector<float> logits;
  for (int s = 0; s < 3; ++s) {
    ASSERT_TRUE(e->forward().step_all({{seqs[size_t(s)].get(), prompts[size_t(s)].data(), lengths[s], false}}, &logits).ok());
    capture(s);
  }
  int64_t checked = 0;
  std::vector<int32_t> next = {1, 2, 3};
  for (int step = 0; step < 150; ++step) {
    std::vector<StepInput> batch;
    for (int s = 0; s < 3; ++s) batch.push_back({seqs[size_t(s)].get(), &next[size_t(s)], 1, false});
    ASSERT_TRUE(e->forward().step_all(batch, &logits).ok()) << "step " << step;
    for (int s = 0; s < 3; ++s) {
      next[size_t(s)] = int32_t(std::max_element(logits.begin() + s * g.n_layers * 0 + s * e->weights().config.vocab,
                                                 logits.begin() + (s + 1) * e->weights().config.vocab) -
                                (logits.begin() + s * e->weights().config.vocab));
      capture(s);
      // slot_pages() is what the slots hold once the background recalls land: land them first.
      ASSERT_TRUE(seqs[size_t(s)]->drain().ok());
      TieredKv& kv = seqs[size_t(s)]->kv();
      for (int64_t l = 0; l < g.n_layers; ++l) {
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          const auto& held = kv.slot_pages(l, h);
          for (size_t slot = 0; slot < held.size(); ++slot) {
            if (held[slot] < 0) continue;
            const std::string& want = shadow[size_t(s)][{l, held[slot]}];
            ASSERT_EQ(std::memcmp(kv.slot_data(l, h, int64_t(slot)), want.data() + size_t(h) * g.chunk_bytes(), g.chunk_bytes()), 0)
                << "sequence " << s << " layer " << l << " head " << h << " page " << held[slot] << " step " << step;
            ++checked;
          }
        }
      }
    }
  }
  // The kvstore's own copy of every offloaded page equals what was written.
  for (int s = 0; s < 3; ++s) {
    for (const auto& [key, bytes] : shadow[size_t(s)]) {
      KvstoreClient* client = e->kvstore();
      auto info = client->open_session("bytes-" + std::to_string(s), session_geometry(g), false);
      ASSERT_TRUE(info.ok());
      const uint8_t* stored = client->committed_page(info->ref, int(key.first), key.second);
      ASSERT_NE(stored, nullptr);
      ASSERT_EQ(std::memcmp(stored, bytes.data(), bytes.size()), 0) << "kvstore copy of page " << key.second;
    }
  }
  std::printf("checked %lld recalled chunks byte for byte\n", (long long)checked);
  EXPECT_GT(checked, 1000);
  for (auto& seq : seqs) ASSERT_TRUE(seq->drain().ok());
}

}  // namespace
}  // namespace freekv
