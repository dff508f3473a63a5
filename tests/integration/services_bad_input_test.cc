// Bad requests get the status code DESIGN §5 gives them and a message that says what to change, while
// a long generation of another session keeps streaming and both processes keep serving.
#include <signal.h>

#include <cmath>
#include <thread>

#include "freekv/v1/worker.grpc.pb.h"
#include "tests/integration/services_test_util.h"

namespace freekv::testing {
namespace {

void expect_status(const grpc::Status& s, grpc::StatusCode code, const std::string& words, const std::string& what) {
  EXPECT_EQ(s.error_code(), code) << what << ": " << s.error_message();
  EXPECT_NE(s.error_message().find(words), std::string::npos) << what << ": message '" << s.error_message()
                                                               << "' should mention '" << words << "'";
}

TEST(ServicesBadInput, RightCodesAndMessagesWhileOthersAreServed) {
  auto stack = start_stack("bad");
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);

  // A long generation of another session runs through all of it.
  ASSERT_TRUE(create_session(*stub, "bystander").ok());
  const auto bystander_prompt = prompt_ids(200, 9);
  Outcome bystander;
  std::atomic<bool> streaming{false};
  std::thread bystander_thread([&] {
    bystander = generate_with(*stub, greedy_ids(bystander_prompt, 600, "bystander"), [&](const Outcome&) {
      streaming = true;
      return true;
    });
  });
  while (!streaming.load() && bystander_thread.joinable()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  auto gen = [&](const v1::GenerateRequest& r) { return generate(*stub, r, 30000).status; };
  expect_status(gen(greedy_ids(prompt_ids(10, 1), 8, "bystander")), grpc::StatusCode::FAILED_PRECONDITION,
                "already generating", "second turn while the first runs");
  v1::GenerateRequest ok = greedy_ids(prompt_ids(10, 1), 8);

  v1::GenerateRequest r = ok;
  r.mutable_prompt_ids()->clear_ids();
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "prompt is empty", "empty prompt ids");
  r = ok;
  r.set_prompt("");
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "prompt is empty", "empty prompt text");
  r = ok;
  r.set_prompt("the whole context as text");
  r.set_prompt_is_context(true);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "prompt_ids only", "prompt_is_context with text");

  r = ok;
  r.set_prompt(std::string(5 << 20, 'a'));  // beyond the coordinator's 4 MiB
  expect_status(gen(r), grpc::StatusCode::RESOURCE_EXHAUSTED, "shorten it", "oversized prompt text");
  r = greedy_ids(prompt_ids(33000, 2), 8);  // beyond the model's 32768 positions
  expect_status(gen(r), grpc::StatusCode::RESOURCE_EXHAUSTED, "max_position_embeddings", "prompt longer than the model");

  r = ok;
  r.set_max_tokens(0);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "max_tokens must be >= 1", "max tokens 0");
  r = ok;
  r.set_max_tokens(40000);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "lower max_tokens", "max tokens beyond the model");

  r = ok;
  r.mutable_sampling()->set_temperature(-1);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "temperature", "negative temperature");
  r = ok;
  r.mutable_sampling()->set_temperature(std::nan(""));
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "temperature", "NaN temperature");
  r = ok;
  r.mutable_sampling()->set_top_p(0);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "top_p", "top_p 0");
  r = ok;
  r.mutable_sampling()->set_top_p(1.5);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "top_p", "top_p 1.5");
  r = ok;
  r.mutable_sampling()->set_top_k(-3);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "top_k", "negative top_k");
  r = greedy_ids({5, 2048, 7}, 8);
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "vocabulary", "token id outside the vocabulary");
  r = ok;
  r.add_stop("");
  expect_status(gen(r), grpc::StatusCode::INVALID_ARGUMENT, "stop string", "empty stop string");

  // Sessions.
  expect_status(gen(greedy_ids(prompt_ids(10, 1), 8, "nobody-made-me")), grpc::StatusCode::NOT_FOUND, "create it first",
                "unknown session");
  expect_status(gen(greedy_ids(prompt_ids(10, 1), 8, "bad id!")), grpc::StatusCode::INVALID_ARGUMENT, "only letters",
                "malformed session id");
  expect_status(gen(greedy_ids(prompt_ids(10, 1), 8, "private-1-1")), grpc::StatusCode::INVALID_ARGUMENT, "reserved",
                "reserved session id");
  expect_status(create_session(*stub, "bystander"), grpc::StatusCode::ALREADY_EXISTS, "already exists", "duplicate session");
  ASSERT_TRUE(create_session(*stub, "empty").ok());
  expect_status(gen(greedy_ids({}, 8, "empty")), grpc::StatusCode::INVALID_ARGUMENT, "no tokens to continue from",
                "continuing an empty session");
  {
    grpc::ClientContext ctx;
    v1::CloseGenerationSessionRequest req;
    req.set_session_id("nobody-made-me");
    v1::CloseGenerationSessionResponse resp;
    expect_status(stub->CloseSession(&ctx, req, &resp), grpc::StatusCode::NOT_FOUND, "unknown session", "closing an unknown session");
  }

  // A deadline that passes mid-generation stops it; the session is free again right after.
  ASSERT_TRUE(create_session(*stub, "hurried").ok());
  expect_status(generate(*stub, greedy_ids(prompt_ids(10, 3), 20000, "hurried"), 300).status,
                grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline", "deadline");
  EXPECT_TRUE(gen(greedy_ids(prompt_ids(5, 4), 4, "hurried")).ok());

  // Admin without a token, with a wrong one, and the worker registry without one.
  auto admin = admin_stub(*stack);
  {
    grpc::ClientContext ctx;
    v1::ListWorkersResponse resp;
    expect_status(admin->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp), grpc::StatusCode::UNAUTHENTICATED,
                  "authorization", "admin without a token");
  }
  {
    grpc::ClientContext ctx;
    add_bearer(&ctx, "not-the-token");
    v1::AdminGetSessionRequest req;
    req.set_session_id("bystander");
    v1::AdminGetSessionResponse resp;
    expect_status(admin->GetSession(&ctx, req, &resp), grpc::StatusCode::PERMISSION_DENIED, "wrong admin token",
                  "admin with a wrong token");
  }
  {
    grpc::ClientContext ctx;
    add_bearer(&ctx, token_of(*stack));
    v1::AdminGetSessionRequest req;
    req.set_session_id("nobody-made-me");
    v1::AdminGetSessionResponse resp;
    expect_status(admin->GetSession(&ctx, req, &resp), grpc::StatusCode::NOT_FOUND, "unknown session", "admin: unknown session");
  }
  {
    auto registry = v1::WorkerRegistry::NewStub(make_channel(stack->coordinator_address()));
    grpc::ClientContext ctx;
    v1::RegisterWorkerRequest req;
    req.set_address("127.0.0.1:1");
    v1::RegisterWorkerResponse resp;
    expect_status(registry->Register(&ctx, req, &resp), grpc::StatusCode::UNAUTHENTICATED, "authorization",
                  "registering a worker without the token");
  }

  // Everyone else was served: the bystander's stream completed, and both processes still serve.
  bystander_thread.join();
  ASSERT_TRUE(bystander.status.ok()) << bystander.status.error_message();
  EXPECT_EQ(int(bystander.tokens.size()), 600);
  Outcome after = generate(*stub, ok);
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_TRUE(stack->coordinator().running());
  EXPECT_TRUE(stack->workers()[0]->running());
  auto engine = reference_engine(*stack);
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(same_greedy(*engine, bystander_prompt, reference_tokens(*engine, bystander_prompt, 600), bystander.tokens,
                          "bystander"));
  engine.reset();
  finish_stack(std::move(stack));
}

}  // namespace
}  // namespace freekv::testing
