// Generation through the services (client → coordinator → worker ⇄ kvstore, real processes):
// greedy output equals `freekv run` with the same policy, and 16 concurrent sessions of different
// lengths, continuously batched, each produce what they produce alone.
#include <cstdio>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/services_test_util.h"

namespace freekv::testing {
namespace {

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// A few hundred tokens of text, so freekv (budget 192) selects and recalls pages.
std::string long_prompt() {
  std::string p;
  const char* words[] = {"river", "stone", "lantern", "orbit", "harvest", "copper", "meadow", "signal", "thunder", "violet"};
  for (int i = 0; i < 260; ++i) p += std::string(words[(i * 7 + i / 3) % 10]) + (i % 13 == 12 ? ". " : " ");
  return p;
}

TEST(ServicesGenerate, HealthAndReflectionOnEveryService) {
  auto stack = start_stack("gen-health");
  ASSERT_NE(stack, nullptr);
  for (const std::string& address : {stack->coordinator_address(), stack->worker_addresses()[0]}) {
    EXPECT_EQ(health_status(make_channel(address), std::chrono::milliseconds(3000)), "SERVING") << address;
  }
  const std::string coordinator = reflection_list_services(stack->coordinator_address());
  for (const char* service : {"freekv.v1.Generation", "freekv.v1.Admin", "freekv.v1.WorkerRegistry", "grpc.health.v1.Health"}) {
    EXPECT_NE(coordinator.find(service), std::string::npos) << "the coordinator's reflection does not list " << service;
  }
  EXPECT_NE(reflection_list_services(stack->worker_addresses()[0]).find("freekv.v1.Worker"), std::string::npos);
  finish_stack(std::move(stack));
}

TEST(ServicesGenerate, GreedyEqualsFreekvRun) {
  auto stack = start_stack("gen-run");
  ASSERT_NE(stack, nullptr);
  const std::string prompt = long_prompt();
  v1::GenerateRequest req;
  req.set_prompt(prompt);
  req.set_max_tokens(48);
  req.set_ignore_eos(true);
  auto stub = generation_stub(*stack);
  Outcome got = generate(*stub, req);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_GT(got.chunks, 1) << "tokens should stream in several messages";

  const std::string prompt_file = stack->options().run_dir + "/prompt.txt";
  ASSERT_TRUE(write_file(prompt_file, prompt).ok());
  std::string cmd = std::string(FREEKV_BIN_DIR) + "/freekv run --model " FREEKV_TEST_MODEL_DIR
                    " --json --ignore-eos --max-tokens 48 --prompt-file " + prompt_file;
  for (const std::string& f : retrieval_flags()) cmd += " " + f;
  const std::string out = run_command(cmd + " 2>/dev/null");
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << "freekv run printed: " << out;
  EXPECT_EQ(got.tokens, j["tokens"].get<std::vector<int32_t>>());
  EXPECT_EQ(got.text, j["text"].get<std::string>());
  EXPECT_EQ(got.done.finish_reason(), j["finish_reason"].get<std::string>());
  EXPECT_EQ(got.done.usage().prompt_tokens(), int64_t(j["prompt_tokens"].size()));
  // The same policy did the same retrieval work.
  EXPECT_EQ(got.done.retrieval().policy(), "freekv");
  EXPECT_GT(got.done.retrieval().selection_steps(), 0);
  EXPECT_EQ(got.done.retrieval().selection_steps(), j["retrieval"]["selection_steps"].get<int64_t>());
  EXPECT_EQ(got.done.retrieval().pages_recalled(), j["retrieval"]["pages_recalled"].get<int64_t>());
  EXPECT_EQ(got.done.retrieval().correction_checks(), j["retrieval"]["correction_checks"].get<int64_t>());
  finish_stack(std::move(stack));
}

TEST(ServicesGenerate, SixteenConcurrentSessionsOfDifferentLengths) {
  auto stack = start_stack("gen-16");
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  constexpr int kSessions = 16;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> max_tokens;
  for (int i = 0; i < kSessions; ++i) {
    prompts.push_back(prompt_ids(5 + 37 * i, uint32_t(100 + i)));  // 5 .. 560 tokens
    max_tokens.push_back(8 + (i * 11) % 40);
    ASSERT_TRUE(create_session(*stub, absl::StrCat("conc-", i)).ok());
  }
  std::vector<Outcome> results(kSessions);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      results[size_t(i)] = generate(*stub, greedy_ids(prompts[size_t(i)], max_tokens[size_t(i)], absl::StrCat("conc-", i)));
    });
  }
  for (auto& t : threads) t.join();

  auto engine = reference_engine(*stack);
  ASSERT_NE(engine, nullptr);
  for (int i = 0; i < kSessions; ++i) {
    const Outcome& r = results[size_t(i)];
    ASSERT_TRUE(r.status.ok()) << "session " << i << ": " << r.status.error_message();
    EXPECT_EQ(r.done.usage().prompt_tokens(), int64_t(prompts[size_t(i)].size()));
    EXPECT_EQ(r.done.usage().generated_tokens(), max_tokens[size_t(i)]);
    EXPECT_EQ(r.done.usage().session_tokens(), int64_t(prompts[size_t(i)].size()) + max_tokens[size_t(i)]);
    const auto expected = reference_tokens(*engine, prompts[size_t(i)], max_tokens[size_t(i)]);
    EXPECT_TRUE(same_greedy(*engine, prompts[size_t(i)], expected, r.tokens, absl::StrCat("session ", i)));
  }
  // They ran together: the worker stepped fewer times than the requests need one after another
  // (a prefill step per 512 prompt tokens, then a step per generated token but the first).
  int64_t sequential_steps = 0, generated = 0;
  for (int i = 0; i < kSessions; ++i) {
    sequential_steps += (int64_t(prompts[size_t(i)].size()) + 511) / 512 + max_tokens[size_t(i)] - 1;
    generated += max_tokens[size_t(i)];
  }
  auto admin = admin_stub(*stack);
  v1::WorkerStatus worker;
  for (int tries = 0; tries < 100 && worker.generated_tokens() < generated; ++tries) {  // until a heartbeat reports it all
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    add_bearer(&ctx, token_of(*stack));
    v1::ListWorkersResponse workers;
    ASSERT_TRUE(admin->ListWorkers(&ctx, v1::ListWorkersRequest(), &workers).ok());
    ASSERT_EQ(workers.workers_size(), 1);
    worker = workers.workers(0);
  }
  EXPECT_EQ(worker.generated_tokens(), generated);
  EXPECT_LT(worker.steps(), sequential_steps * 8 / 10) << "the 16 requests did not share steps";
  std::printf("16 sessions: %lld steps batched vs %lld one after another\n", (long long)worker.steps(),
              (long long)sequential_steps);
  engine.reset();
  finish_stack(std::move(stack));
}

}  // namespace
}  // namespace freekv::testing
