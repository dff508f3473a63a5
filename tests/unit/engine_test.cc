// Composition tests of the CPU engine (DESIGN §6, layer 2): paging, chunking, batching and incremental
// decode must not change the numbers; bad requests and a full KV pool give clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "kernels/ops.h"
#include "test_models.h"
#include "worker/engine/generate.h"

namespace freekv {
namespace {

const TinyModel kGqa = {"gqa4", ModelArch::kLlama, 2, 128, 8, 2, 64, 256};

std::unique_ptr<Engine> load(const TinyModel& m, int64_t page_tokens, int64_t prefill_chunk, uint64_t kv_memory = 1ull << 30) {
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = page_tokens;
  o.prefill_chunk = prefill_chunk;
  o.kv_memory = kv_memory;
  auto e = Engine::load(tiny_model_dir(m), o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

std::vector<int32_t> test_prompt(int n, int vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  return p;
}

// All-position logits of prompt + greedy continuation.
GenerateResult run(Engine& e, const std::vector<int32_t>& prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.keep_logits = true;
  auto out = e.generate(r, nullptr);
  EXPECT_TRUE(out.ok()) << out.status();
  return *out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

double logits_std(const std::vector<float>& v) {
  double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()), ss = 0;
  for (float x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(v.size()));
}

// The bound on two computations of the same logits: `fp32_bound` in fp32 arithmetic; in bf16 arithmetic
// (kernels/ops.h) the noise of rounding the products' inputs, 3e-2 of the logits' std
// (tests/reference/check_model.py TOL_REL_BF16, where it is measured). engine_test_fp32_arithmetic runs
// every test here in fp32.
double same_logits_bound(double fp32_bound, const std::vector<float>& logits) {
  return matmul_arithmetic() == MatmulArithmetic::kBF16 ? 3e-2 * logits_std(logits) : fp32_bound;
}

TEST(Engine, PagingDoesNotChangeLogits) {
  // Same prefill chunks (so the same matmul path), pages of 4 tokens vs one page for everything:
  // only the attention's page walk differs.
  auto contiguous = load(kGqa, 4096, 7);
  auto paged = load(kGqa, 4, 7);
  const auto prompt = test_prompt(45, contiguous->weights().config.vocab);
  GenerateResult a = run(*contiguous, prompt, 10), b = run(*paged, prompt, 10);
  EXPECT_EQ(a.tokens, b.tokens);
  const double diff = max_abs_diff(a.logits, b.logits);
  std::printf("4-token pages vs one page: max abs logit diff %.3g\n", diff);
  EXPECT_LT(diff, same_logits_bound(1e-4, a.logits));
}

TEST(Engine, ChunkedPrefillMatchesWholePrefill) {
  // 7-token chunks take the streaming SIMD matmul, one 45-token chunk the prefill one: the sums are
  // ordered differently, and a K/V element (or, in bf16 arithmetic, a product's input) that lands near a
  // bf16 rounding midpoint can round the other way, so the bound is relative to the logits' spread (as
  // tests/reference/check_model.py's TOL_REL).
  auto whole = load(kGqa, 32, 4096);
  auto chunked = load(kGqa, 32, 7);
  const auto prompt = test_prompt(45, whole->weights().config.vocab);
  GenerateResult a = run(*whole, prompt, 10), b = run(*chunked, prompt, 10);
  EXPECT_EQ(a.tokens, b.tokens);
  const double diff = max_abs_diff(a.logits, b.logits), std = logits_std(a.logits);
  std::printf("7-token chunks vs one chunk: max abs logit diff %.3g (%.3g of the logits' std)\n", diff, diff / std);
  EXPECT_LT(diff, same_logits_bound(5e-3 * std, a.logits));
}

TEST(Engine, IncrementalDecodeEqualsPrefillOfTheWholeSequence) {
  auto e = load(kGqa, 8, 16);
  const auto prompt = test_prompt(20, e->weights().config.vocab);
  GenerateResult gen = run(*e, prompt, 8);
  // Prefill prompt + generated[:-1] in one go: its last 8 rows are what decode sampled from.
  std::vector<int32_t> full = prompt;
  full.insert(full.end(), gen.tokens.begin(), gen.tokens.end() - 1);
  GenerateResult whole = run(*e, full, 1);
  const int64_t V = e->weights().config.vocab;
  std::vector<float> decode_rows(gen.logits.end() - 8 * V, gen.logits.end());
  std::vector<float> prefill_rows(whole.logits.begin() + (int64_t(full.size()) - 8) * V,
                                  whole.logits.begin() + int64_t(full.size()) * V);
  const double diff = max_abs_diff(decode_rows, prefill_rows);
  std::printf("decode vs prefill logits: max abs diff %.3g\n", diff);
  EXPECT_LT(diff, same_logits_bound(1e-3, prefill_rows));
}

TEST(Engine, BatchedStepEqualsSeparateSteps) {
  auto e = load(kGqa, 8, 64);
  const int64_t V = e->weights().config.vocab;
  const auto p1 = test_prompt(13, int(V)), p2 = test_prompt(29, int(V - 5));
  auto a = *e->new_sequence("a"), b = *e->new_sequence("b"), a2 = *e->new_sequence("a2"), b2 = *e->new_sequence("b2");
  std::vector<float> together, alone1, alone2;
  ASSERT_TRUE(e->forward().step_all({{a.get(), p1.data(), 13, true}, {b.get(), p2.data(), 29, true}}, &together).ok());
  ASSERT_TRUE(e->forward().step_all({{a2.get(), p1.data(), 13, true}}, &alone1).ok());
  ASSERT_TRUE(e->forward().step_all({{b2.get(), p2.data(), 29, true}}, &alone2).ok());
  alone1.insert(alone1.end(), alone2.begin(), alone2.end());
  EXPECT_LT(max_abs_diff(together, alone1), 1e-4);
  // One decode token each, ragged lengths (13 and 29 tokens of context).
  const int32_t t1 = 5, t2 = 9;
  ASSERT_TRUE(e->forward().step_all({{a.get(), &t1, 1, false}, {b.get(), &t2, 1, false}}, &together).ok());
  ASSERT_TRUE(e->forward().step_all({{a2.get(), &t1, 1, false}}, &alone1).ok());
  ASSERT_TRUE(e->forward().step_all({{b2.get(), &t2, 1, false}}, &alone2).ok());
  alone1.insert(alone1.end(), alone2.begin(), alone2.end());
  EXPECT_LT(max_abs_diff(together, alone1), 1e-4);
}

TEST(Engine, RequestsAreValidatedWithClearMessages) {
  auto e = load(kGqa, 32, 512);
  GenerateRequest r;
  r.max_tokens = 4;
  auto empty = e->generate(r, nullptr);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("prompt is empty"), std::string::npos);
  r.prompt = {1, 2, 3};
  r.max_tokens = 5000;
  auto too_long = e->generate(r, nullptr);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("max_position_embeddings"), std::string::npos);
  r.max_tokens = 4;
  r.prompt = {1, 999999};
  EXPECT_EQ(e->generate(r, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  r.prompt = {1, 2};
  r.sampling.temperature = -1;
  auto bad_t = e->generate(r, nullptr);
  EXPECT_NE(bad_t.status().message().find("temperature"), std::string::npos);
  r.sampling.temperature = 1;
  r.sampling.top_p = 0;
  EXPECT_NE(e->generate(r, nullptr).status().message().find("top_p"), std::string::npos);
}

// A request's retrieval override runs exactly as an engine whose own policy it is (streaming at a
// budget the prompt outgrows, so the policy changes the numbers), and overrides the engine cannot run
// are refused with the reason.
TEST(Engine, RequestRetrievalOverrideEqualsTheEnginesOwnPolicy) {
  RetrievalConfig streaming;
  streaming.policy = PolicyKind::kStreaming;
  streaming.budget = 64;
  streaming.sink = 16;
  streaming.recent = 32;
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = 16;
  o.kv_memory = 1ull << 30;
  auto full_engine = Engine::load(tiny_model_dir(kGqa), o);
  ASSERT_TRUE(full_engine.ok()) << full_engine.status();
  o.retrieval = streaming;
  auto streaming_engine = Engine::load(tiny_model_dir(kGqa), o);
  ASSERT_TRUE(streaming_engine.ok()) << streaming_engine.status();
  const std::vector<int32_t> prompt = test_prompt(150, 256);
  const GenerateResult own = run(**streaming_engine, prompt, 6), full = run(**full_engine, prompt, 6);
  GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = 6;
  r.ignore_eos = true;
  r.keep_logits = true;
  r.retrieval = streaming;
  auto overridden = (*full_engine)->generate(r, nullptr);
  ASSERT_TRUE(overridden.ok()) << overridden.status();
  EXPECT_EQ(overridden->logits, own.logits);
  EXPECT_GT(max_abs_diff(overridden->logits, full.logits), 1e-3);  // the budget was in force

  r.retrieval->policy = PolicyKind::kFreekv;
  auto no_kvstore = (*full_engine)->generate(r, nullptr);
  EXPECT_EQ(no_kvstore.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_kvstore.status().message().find("needs an engine with a kvstore"), std::string::npos) << no_kvstore.status();
  r.retrieval->policy = PolicyKind::kStreaming;
  r.retrieval->budget = 70;  // not whole pages
  EXPECT_EQ((*full_engine)->generate(r, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

// A model whose layers have a sliding window: the CPU engine attends each window, so requests may use
// the model's whole positions; while a sequence fits the window that equals attending the whole context
// (attend_beyond_window), beyond it it does not (the rule itself: kernels_test, tests/reference).
TEST(Engine, SlidingWindowsAreAttendedSoRequestsRunPastThem) {
  const TinyModel windowed = {"mistral-window64", ModelArch::kMistral, 2, 128, 4, 2, 32, 256, false, 64};
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = 16;
  o.kv_memory = 1ull << 30;
  auto e = Engine::load(tiny_model_dir(windowed), o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->weights().config.context_limit(), (*e)->weights().config.max_positions);
  o.attend_beyond_window = true;
  auto whole = Engine::load(tiny_model_dir(windowed), o);
  ASSERT_TRUE(whole.ok()) << whole.status();
  GenerateRequest r;
  r.prompt = test_prompt(60, 256);
  r.max_tokens = 4;  // 64 positions: the whole window
  r.ignore_eos = true;
  r.keep_logits = true;
  auto in_window = (*e)->generate(r, nullptr);
  auto in_window_whole = (*whole)->generate(r, nullptr);
  ASSERT_TRUE(in_window.ok() && in_window_whole.ok()) << in_window.status() << in_window_whole.status();
  EXPECT_EQ(in_window->tokens, in_window_whole->tokens);
  EXPECT_EQ(in_window->logits, in_window_whole->logits);
  r.max_tokens = 40;
  auto past = (*e)->generate(r, nullptr);
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_EQ(past->tokens.size(), 40u);
  r.forced_tokens = past->tokens;
  auto past_whole = (*whole)->generate(r, nullptr);
  ASSERT_TRUE(past_whole.ok()) << past_whole.status();
  EXPECT_NE(past->logits, past_whole->logits) << "beyond the window, attending it or the whole context cannot agree";
}

TEST(Engine, FullKvPoolFailsOnlyTheRequestThatAsked) {
  // Room for 4 pages of 8 tokens per layer: a 20-token sequence fits, a second 20-token one does not.
  const TinyModel& m = kGqa;
  KvGeometry g{m.layers, m.kv_heads, m.head_dim, 8, DType::kBF16};
  auto e = load(m, 8, 64, 4 * m.layers * g.block_bytes());
  const auto prompt = test_prompt(20, e->weights().config.vocab);
  auto first = *e->new_sequence("first"), second = *e->new_sequence("second");
  std::vector<float> logits;
  ASSERT_TRUE(e->forward().step_all({{first.get(), prompt.data(), 20, false}}, &logits).ok());
  absl::Status full = e->forward().step_all({{second.get(), prompt.data(), 20, false}}, &logits);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("--kv-memory"), std::string::npos) << full.message();
  EXPECT_EQ(second->n_tokens(), 0);
  // The first sequence still decodes.
  const int32_t next = 3;
  EXPECT_TRUE(e->forward().step_all({{first.get(), &next, 1, false}}, &logits).ok());
  EXPECT_EQ(first->n_tokens(), 21);
}

TEST(Engine, MissingModelDirectoryNamesTheFile) {
  auto e = Engine::load("/nonexistent/model", EngineOptions{});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(e.status().message().find("/nonexistent/model/config.json"), std::string::npos) << e.status();
}

TEST(Engine, EveryArchitectureGenerates) {
  const TinyModel models[] = {
      {"qwen2", ModelArch::kQwen2, 2, 96, 4, 2, 64, 192},
      {"qwen3", ModelArch::kQwen3, 2, 96, 4, 2, 128, 192},
      {"mistral", ModelArch::kMistral, 2, 96, 7, 1, 64, 192, true},
  };
  for (const TinyModel& m : models) {
    auto e = load(m, 16, 32);
    GenerateResult r = run(*e, test_prompt(40, e->weights().config.vocab), 6);
    EXPECT_EQ(r.tokens.size(), 6u) << m.name;
    for (float x : r.logits) ASSERT_TRUE(std::isfinite(x)) << m.name;
  }
}

}  // namespace
}  // namespace freekv
