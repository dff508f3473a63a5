// Helpers of the services tests: a kvstore + coordinator + worker stack of real processes on loopback
// with unique names (run directory, pool, ports), gRPC clients, and an in-process reference engine on
// the same kvstore that says what greedy generation alone must produce (compared as
// greedy_reference.h says).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>

#include "common/grpc_util.h"
#include "freekv/v1/admin.grpc.pb.h"
#include "freekv/v1/generation.grpc.pb.h"
#include "tests/integration/greedy_reference.h"
#include "tools/service_stack.h"
#include "worker/engine/generate.h"

namespace freekv::testing {

// The retrieval settings every services test uses: freekv with a budget small enough that prompts of a
// few hundred tokens select and recall pages.
inline std::vector<std::string> retrieval_flags() {
  return {"--policy=freekv", "--budget=192", "--sink=32", "--recent=64"};
}

inline RetrievalConfig retrieval_config() {
  RetrievalConfig c;
  c.policy = PolicyKind::kFreekv;
  c.budget = 192;
  c.sink = 32;
  c.recent = 64;
  return c;
}

// freekv with a budget above every context of the session tests: every page is attended, so a turn's
// output is a function of its tokens alone. (With a smaller budget, what a step attends also depends on
// the selections of earlier steps — speculative retrieval uses the previous step's query — and a
// resumed session starts that history afresh, so its continuation may legitimately differ.) Pages
// still go through the kvstore: offloaded when they complete, reattached when a session resumes.
inline std::vector<std::string> whole_context_flags() { return {"--budget=2048", "--sink=512", "--recent=512"}; }

inline RetrievalConfig whole_context_config() {
  RetrievalConfig c;
  c.policy = PolicyKind::kFreekv;
  return c;
}

inline std::unique_ptr<ServiceStack> start_stack(const std::string& test_name, std::vector<std::string> worker_flags = {},
                                                 const std::string& pool_size = "512MiB",
                                                 std::vector<std::string> coordinator_flags = {},
                                                 const std::string& http_listen = "") {
  StackOptions o;
  o.bin_dir = FREEKV_BIN_DIR;
  o.model = FREEKV_TEST_MODEL_DIR;
  o.run_dir = absl::StrCat("/tmp/fkt-", test_name, "-", getpid());
  std::error_code ec;
  std::filesystem::remove_all(o.run_dir, ec);
  o.pool_name = absl::StrCat("fkt-", test_name, "-", getpid());
  o.pool_size = pool_size;
  o.heartbeat_interval_ms = 1000;
  o.worker_flags = retrieval_flags();
  o.worker_flags.push_back("--max_batch=16");
  o.worker_flags.insert(o.worker_flags.end(), worker_flags.begin(), worker_flags.end());
  o.coordinator_flags = std::move(coordinator_flags);
  o.http_listen = http_listen;
  auto s = ServiceStack::start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

// Stops the stack; removes its run directory unless the test failed (the logs are there).
inline void finish_stack(std::unique_ptr<ServiceStack> stack) {
  if (!stack) return;
  const std::string dir = stack->options().run_dir;
  stack->stop();
  if (::testing::Test::HasFailure()) {
    std::printf("the processes' logs are in %s\n", dir.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

inline std::string token_of(const ServiceStack& s) { return *read_token_file(s.token_file()); }

struct Outcome {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  v1::GenerateDone done;
  int chunks = 0;
};

// One Generate call; on_chunk (optional) sees every chunk as it arrives and may return false to stop
// reading (the call is then cancelled).
template <typename F>
Outcome generate_with(v1::Generation::Stub& stub, const v1::GenerateRequest& req, F&& on_chunk, int64_t deadline_ms = 120000) {
  Outcome out;
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(deadline_ms));
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_chunk()) {
      ++out.chunks;
      out.tokens.insert(out.tokens.end(), msg.chunk().token_ids().begin(), msg.chunk().token_ids().end());
      out.text += msg.chunk().text();
      if (!on_chunk(out)) {
        ctx.TryCancel();
      }
    }
    if (msg.has_done()) out.done = msg.done();
  }
  out.status = reader->Finish();
  return out;
}

inline Outcome generate(v1::Generation::Stub& stub, const v1::GenerateRequest& req, int64_t deadline_ms = 120000) {
  return generate_with(stub, req, [](const Outcome&) { return true; }, deadline_ms);
}

inline v1::GenerateRequest greedy_ids(const std::vector<int32_t>& ids, int max_tokens, const std::string& session = "") {
  v1::GenerateRequest r;
  r.mutable_prompt_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  r.set_max_tokens(max_tokens);
  r.set_session_id(session);
  r.set_ignore_eos(true);
  return r;
}

inline std::unique_ptr<v1::Generation::Stub> generation_stub(const ServiceStack& s) {
  return v1::Generation::NewStub(make_channel(s.coordinator_address()));
}

inline std::unique_ptr<v1::Admin::Stub> admin_stub(const ServiceStack& s) {
  return v1::Admin::NewStub(make_channel(s.coordinator_address()));
}

inline grpc::Status create_session(v1::Generation::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(10000));
  v1::CreateSessionRequest req;
  req.set_session_id(id);
  v1::CreateSessionResponse resp;
  return stub.CreateSession(&ctx, req, &resp);
}

// Deterministic prompt ids in [1, vocab - 3) (clear of the test model's special ids at the top).
inline std::vector<int32_t> prompt_ids(int n, uint32_t seed, int vocab = 2048) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& id : ids) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    id = int32_t(1 + x % uint64_t(vocab - 4));
  }
  return ids;
}

// The raw ServerReflectionResponse to a list_services request (grpc.reflection.v1alpha), through a
// generic stub: Debian ships the reflection server but not its client stubs. It holds the service
// names as plain strings.
inline std::string reflection_list_services(const std::string& address) {
  grpc::GenericStub stub(make_channel(address));
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(5000));
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto step = [&](intptr_t id) { return cq.Next(&tag, &ok) && ok && tag == reinterpret_cast<void*>(id); };
  call->StartCall(reinterpret_cast<void*>(1));
  if (!step(1)) return "";
  const char request[] = {0x3a, 0x00};  // field 7 (list_services) = ""
  grpc::Slice slice(request, sizeof request);
  call->Write(grpc::ByteBuffer(&slice, 1), reinterpret_cast<void*>(2));
  if (!step(2)) return "";
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  if (!step(3)) return "";
  call->WritesDone(reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return bytes;
}

// The engine in this process on the stack's kvstore, with the worker's model and retrieval.
inline std::unique_ptr<Engine> reference_engine(const ServiceStack& s, const RetrievalConfig& retrieval = retrieval_config()) {
  EngineOptions o;
  o.retrieval = retrieval;
  o.kvstore_socket = s.kvstore_socket();
  o.kv_memory = 256ull << 20;
  auto e = Engine::load(FREEKV_TEST_MODEL_DIR, o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// Greedy continuation of `context` by the reference engine alone.
inline std::vector<int32_t> reference_tokens(Engine& e, const std::vector<int32_t>& context, int max_tokens) {
  auto tokens = greedy_tokens(e, context, max_tokens);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : std::vector<int32_t>{};
}

// True when `got` equals `expected`, or first differs from it at a position where the reference finds
// both tokens tied (greedy_reference.h). Explains a real difference through ADD_FAILURE.
inline bool same_greedy(Engine& e, const std::vector<int32_t>& context, const std::vector<int32_t>& expected,
                        const std::vector<int32_t>& got, const std::string& what) {
  const GreedyComparison c = compare_greedy(e, context, expected, got);
  if (!c.same) ADD_FAILURE() << what << ": " << c.detail;
  else if (!c.detail.empty()) std::printf("%s: %s\n", what.c_str(), c.detail.c_str());
  return c.same;
}

}  // namespace freekv::testing
