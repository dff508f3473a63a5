// Sessions through the services: a second turn reuses the first's KV instead of prefilling it again;
// the admin API's occupancy is what the kvstore reports; a worker killed mid-stream ends its stream
// with UNAVAILABLE and another worker on the same kvstore continues the session exactly where an
// uninterrupted run would be; token ids sent as the session's whole context settle it on them; a
// worker outlives its kvstore's restart.
#include <signal.h>

#include <thread>

#include "freekv/v1/kvstore.grpc.pb.h"
#include "tests/integration/services_test_util.h"

namespace freekv::testing {
namespace {

v1::AdminGetSessionResponse admin_session(const ServiceStack& s, const std::string& id, grpc::Status* status = nullptr) {
  auto admin = admin_stub(s);
  grpc::ClientContext ctx;
  add_bearer(&ctx, token_of(s));
  v1::AdminGetSessionRequest req;
  req.set_session_id(id);
  v1::AdminGetSessionResponse resp;
  grpc::Status st = admin->GetSession(&ctx, req, &resp);
  if (status != nullptr) *status = st;
  else EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

std::unique_ptr<v1::KvStore::Stub> kvstore_stub(const ServiceStack& s) {
  return v1::KvStore::NewStub(make_channel("unix:" + s.kvstore_socket()));
}

v1::SessionInfo kvstore_session(const ServiceStack& s, const std::string& id) {
  auto kv = kvstore_stub(s);
  grpc::ClientContext ctx;
  v1::GetSessionRequest req;
  req.set_session_id(id);
  req.set_include_token_ids(true);
  v1::GetSessionResponse resp;
  grpc::Status st = kv->GetSession(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp.session();
}

TEST(ServicesSession, SecondTurnReusesTheFirstTurnsKv) {
  auto stack = start_stack("sess-2turn", whole_context_flags());
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  ASSERT_TRUE(create_session(*stub, "chat").ok());
  const auto p1 = prompt_ids(300, 1), p2 = prompt_ids(12, 2);
  Outcome t1 = generate(*stub, greedy_ids(p1, 24, "chat"));
  ASSERT_TRUE(t1.status.ok()) << t1.status.error_message();
  EXPECT_EQ(t1.done.usage().reused_tokens(), 0);
  const int64_t after1 = t1.done.usage().session_tokens();
  EXPECT_EQ(after1, 300 + 24);

  Outcome t2 = generate(*stub, greedy_ids(p2, 16, "chat"));
  ASSERT_TRUE(t2.status.ok()) << t2.status.error_message();
  const v1::Usage& u = t2.done.usage();
  // Every complete page of turn 1 comes from the kvstore; only its partial last page (the last sampled
  // token included) is recomputed, then the new prompt.
  EXPECT_EQ(u.reused_tokens(), (after1 - 1) / 32 * 32);
  EXPECT_EQ(u.reused_tokens() + u.replayed_tokens(), after1);
  EXPECT_LT(u.replayed_tokens(), 32);
  EXPECT_EQ(u.prompt_tokens(), 12);
  EXPECT_EQ(u.session_tokens(), after1 + 12 + 16);

  // The continuation is what one request over the whole conversation produces.
  auto engine = reference_engine(*stack, whole_context_config());
  ASSERT_NE(engine, nullptr);
  std::vector<int32_t> context = p1;
  context.insert(context.end(), t1.tokens.begin(), t1.tokens.end());
  context.insert(context.end(), p2.begin(), p2.end());
  EXPECT_TRUE(same_greedy(*engine, context, reference_tokens(*engine, context, 16), t2.tokens, "turn 2"));

  // The coordinator summed both turns.
  auto detail = admin_session(*stack, "chat");
  EXPECT_EQ(detail.session().summary().turns(), 2);
  EXPECT_EQ(detail.session().reused_tokens(), u.reused_tokens());
  EXPECT_EQ(detail.session().summary().tokens(), uint64_t(u.session_tokens()));
  engine.reset();
  finish_stack(std::move(stack));
}

TEST(ServicesSession, AdminOccupancyEqualsTheKvstores) {
  auto stack = start_stack("sess-occ");
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  ASSERT_TRUE(create_session(*stub, "occ").ok());
  Outcome t = generate(*stub, greedy_ids(prompt_ids(410, 3), 40, "occ"));
  ASSERT_TRUE(t.status.ok()) << t.status.error_message();

  const v1::SessionDetail d = admin_session(*stack, "occ").session();
  const v1::SessionInfo kv = kvstore_session(*stack, "occ");
  EXPECT_EQ(d.summary().tokens(), kv.n_tokens());
  EXPECT_EQ(d.occupancy().host_pages(), kv.committed_pages());
  EXPECT_EQ(d.occupancy().host_bytes(), kv.bytes());
  EXPECT_EQ(d.occupancy().page_bytes(), kv.page_bytes());
  ASSERT_EQ(d.occupancy().layers_size(), kv.layers_size());
  ASSERT_GT(kv.layers_size(), 0);
  for (int l = 0; l < kv.layers_size(); ++l) {
    EXPECT_EQ(d.occupancy().layers(l).host_pages(), kv.layers(l).pages()) << "layer " << l;
    EXPECT_EQ(d.occupancy().layers(l).host_bytes(), kv.layers(l).bytes()) << "layer " << l;
    EXPECT_EQ(d.occupancy().layers(l).highest_host_page(), kv.layers(l).highest_page()) << "layer " << l;
    EXPECT_EQ(kv.layers(l).pages(), uint64_t(449 / 32)) << "every complete page of every layer is in the host pool";
  }
  // Recall bytes and correction rate are those the turn reported.
  EXPECT_EQ(d.retrieval().bytes_recalled(), t.done.retrieval().bytes_recalled());
  EXPECT_EQ(d.retrieval().correction_checks(), t.done.retrieval().correction_checks());
  EXPECT_GT(d.retrieval().correction_checks(), 0);

  // While a turn runs, the worker reports the pages it holds: sinks and window locally, the selected
  // budget in slots.
  std::atomic<bool> seen{false};
  std::thread poller;
  Outcome running = generate_with(*stub, greedy_ids(prompt_ids(8, 4), 3000, "occ"), [&](const Outcome& o) {
    if (o.tokens.size() >= 20 && !seen.load()) {
      const v1::SessionDetail live = admin_session(*stack, "occ").session();
      EXPECT_TRUE(live.summary().generating());
      EXPECT_GT(live.occupancy().worker_pages(), 0u);
      EXPECT_GT(live.occupancy().selected_chunks(), 0u);
      EXPECT_EQ(live.occupancy().worker_bytes(), live.occupancy().worker_pages() * live.occupancy().page_bytes());
      // All the worker's KV memory the sequence holds: its pages and its selected slots.
      EXPECT_GE(live.occupancy().worker_kv_bytes(), live.occupancy().worker_bytes() + live.occupancy().selected_bytes());
      EXPECT_GE(live.occupancy().worker_kv_peak_bytes(), live.occupancy().worker_kv_bytes());
      EXPECT_GT(live.occupancy().digest_bytes(), 0u);
      seen = true;
      return false;  // cancels the rest of the turn
    }
    return true;
  });
  EXPECT_TRUE(seen.load());
  EXPECT_EQ(running.status.error_code(), grpc::StatusCode::CANCELLED);
  // The cancelled turn kept what it generated, and the session is free for the next turn.
  Outcome after = generate(*stub, greedy_ids(prompt_ids(4, 5), 4, "occ"));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  finish_stack(std::move(stack));
}

TEST(ServicesSession, FullKvstoreLeavesEachSessionWithWhatItsClientReceived) {
  // Four new sessions at once, each a 164-token prompt and 300 tokens, in a pool too small for them:
  // every turn may end RESOURCE_EXHAUSTED, but each session then holds exactly its prompt and the
  // tokens its client received (nothing when it received none), each once.
  auto stack = start_stack("sess-full", {}, "16MiB");
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  std::vector<Outcome> outcomes(4);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(prompt_ids(164, 40 + uint32_t(i)));
    ASSERT_TRUE(create_session(*stub, "full-" + std::to_string(i)).ok());
  }
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      outcomes[size_t(i)] = generate(*stub, greedy_ids(prompts[size_t(i)], 300, "full-" + std::to_string(i)));
    });
  }
  for (auto& c : clients) c.join();
  auto engine = reference_engine(*stack);
  ASSERT_NE(engine, nullptr);
  KvstoreClient& kv = *engine->kvstore();
  int exhausted = 0;
  for (int i = 0; i < 4; ++i) {
    const Outcome& o = outcomes[size_t(i)];
    EXPECT_TRUE(o.status.ok() || o.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) << o.status.error_message();
    exhausted += o.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    auto info = kv.open_session("full-" + std::to_string(i), session_geometry(engine->kv_pool().geometry()), false);
    ASSERT_TRUE(info.ok()) << info.status();
    auto stored = kv.tokens(info->ref);
    ASSERT_TRUE(stored.ok()) << stored.status();
    std::vector<int32_t> want;
    if (!o.tokens.empty()) {
      want = prompts[size_t(i)];
      want.insert(want.end(), o.tokens.begin(), o.tokens.end());
    }
    EXPECT_EQ(*stored, want) << "session " << i << " (" << o.tokens.size() << " tokens received, "
                             << o.status.error_message() << ")";
    std::printf("session %d: %s after %zu tokens; it holds %zu ids\n", i, o.status.ok() ? "OK" : "RESOURCE_EXHAUSTED",
                o.tokens.size(), stored->size());
  }
  EXPECT_GT(exhausted, 0) << "the pool was meant to be too small";
  engine.reset();
  finish_stack(std::move(stack));
}

TEST(ServicesSession, AKilledWorkersOneOffRequestLeavesNoSessionBehind) {
  // A request without a session keeps its KV in a private session of the worker's kvstore attachment:
  // when the worker dies (-9) mid-request, the kvstore closes it — no PID bookkeeping, no orphan.
  auto stack = start_stack("sess-oneoff");
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  const pid_t victim = stack->workers()[0]->pid();
  auto private_sessions = [&] {
    auto kv = kvstore_stub(*stack);
    grpc::ClientContext ctx;
    v1::ListSessionsResponse resp;
    EXPECT_TRUE(kv->ListSessions(&ctx, v1::ListSessionsRequest(), &resp).ok());
    int n = 0;
    for (const auto& si : resp.sessions()) n += si.session_id().rfind("private-", 0) == 0;
    return n;
  };
  int during = 0;
  Outcome cut = generate_with(*stub, greedy_ids(prompt_ids(300, 9), 3000), [&](const Outcome& o) {
    if (o.tokens.size() >= 10 && during == 0) {
      during = private_sessions();
      kill(victim, SIGKILL);
    }
    return true;
  });
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_EQ(during, 1) << "the one-off request's private session was not in the kvstore while it ran";
  int left = private_sessions();
  for (int i = 0; i < 100 && left > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = private_sessions();
  }
  EXPECT_EQ(left, 0) << "the dead worker's private session outlived it";
  finish_stack(std::move(stack));
}

TEST(ServicesSession, KilledWorkerSessionContinuesOnAnotherWorker) {
  auto stack = start_stack("sess-kill", whole_context_flags());
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  const auto prompt = prompt_ids(250, 7);
  constexpr int kTokens = 400;
  grpc::Status created;

  // The uninterrupted run, in a session of its own.
  created = create_session(*stub, "whole");
  ASSERT_TRUE(created.ok()) << created.error_message();
  Outcome whole = generate(*stub, greedy_ids(prompt, kTokens, "whole"));
  ASSERT_TRUE(whole.status.ok()) << whole.status.error_message();
  ASSERT_EQ(int(whole.tokens.size()), kTokens);

  // The same turn, its worker killed (-9) once 20 tokens have arrived.
  created = create_session(*stub, "cut");
  ASSERT_TRUE(created.ok()) << created.error_message();
  const pid_t victim = stack->workers()[0]->pid();
  Outcome cut = generate_with(*stub, greedy_ids(prompt, kTokens, "cut"), [&](const Outcome& o) {
    if (o.tokens.size() >= 20) kill(victim, SIGKILL);
    return true;
  });
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_NE(cut.status.error_message().find("send Generate on it again"), std::string::npos) << cut.status.error_message();
  ASSERT_LT(int(cut.tokens.size()), kTokens);
  // What arrived before the kill is the uninterrupted run's beginning.
  EXPECT_TRUE(std::equal(cut.tokens.begin(), cut.tokens.end(), whole.tokens.begin()));

  // Another worker on the same kvstore continues the session.
  auto second = stack->add_worker();
  ASSERT_TRUE(second.ok()) << second.status();
  const int64_t stored = int64_t(kvstore_session(*stack, "cut").n_tokens());
  const int64_t kept = stored - int64_t(prompt.size());  // generated tokens the session holds
  ASSERT_GE(kept, 1);
  ASSERT_LT(kept, kTokens);
  Outcome rest = generate(*stub, greedy_ids({}, int(kTokens - kept), "cut"));
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_NE(rest.done.worker_id(), whole.done.worker_id()) << "the dead worker cannot have served it";
  EXPECT_GT(rest.done.usage().reused_tokens(), 0) << "the committed pages are reused, not recomputed";

  auto engine = reference_engine(*stack, whole_context_config());
  ASSERT_NE(engine, nullptr);
  std::vector<int32_t> context = prompt;
  context.insert(context.end(), whole.tokens.begin(), whole.tokens.begin() + kept);
  const std::vector<int32_t> expected(whole.tokens.begin() + kept, whole.tokens.end());
  EXPECT_TRUE(same_greedy(*engine, context, expected, rest.tokens, "continuation"));

  // The coordinator lists the killed worker as dead and the new one as ready.
  auto admin = admin_stub(*stack);
  grpc::ClientContext ctx;
  add_bearer(&ctx, token_of(*stack));
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(admin->ListWorkers(&ctx, v1::ListWorkersRequest(), &workers).ok());
  int dead = 0, ready = 0;
  for (const auto& w : workers.workers()) (w.state() == "dead" ? dead : ready) += 1;
  EXPECT_EQ(dead, 1);
  EXPECT_EQ(ready, 1);
  engine.reset();
  finish_stack(std::move(stack));
}

std::vector<int32_t> stored_ids(const ServiceStack& s, const std::string& id) {
  const v1::SessionInfo info = kvstore_session(s, id);
  return std::vector<int32_t>(info.token_ids().begin(), info.token_ids().end());
}

std::vector<int32_t> joined(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(ServicesSession, PromptIdsAsContextKeepTheCommonPrefixAndDropTheRest) {
  auto stack = start_stack("sess-context", whole_context_flags());
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  ASSERT_TRUE(create_session(*stub, "ctx").ok());
  const auto prompt = prompt_ids(150, 3);
  Outcome first = generate(*stub, greedy_ids(prompt, 40, "ctx"));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_EQ(stored_ids(*stack, "ctx"), joined(prompt, first.tokens));

  // The client holds only the first 10 generated tokens (say the rest never reached it) and adds its
  // own: the session keeps the prompt and those 10, drops the other 30 and prefills the new ones.
  const std::vector<int32_t> added = prompt_ids(12, 4);
  const std::vector<int32_t> context =
      joined(joined(prompt, std::vector<int32_t>(first.tokens.begin(), first.tokens.begin() + 10)), added);
  v1::GenerateRequest req = greedy_ids(context, 16, "ctx");
  req.set_prompt_is_context(true);
  Outcome second = generate(*stub, req);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(stored_ids(*stack, "ctx"), joined(context, second.tokens));
  EXPECT_EQ(second.done.usage().prompt_tokens(), int64_t(added.size()));
  EXPECT_GE(second.done.usage().reused_tokens() + second.done.usage().replayed_tokens(), int64_t(prompt.size()) + 10 - 32)
      << "the kept prefix's whole pages are reused";

  // Sending exactly what the session holds adds nothing before the new tokens.
  const std::vector<int32_t> all = joined(context, second.tokens);
  req = greedy_ids(all, 8, "ctx");
  req.set_prompt_is_context(true);
  Outcome third = generate(*stub, req);
  ASSERT_TRUE(third.status.ok()) << third.status.error_message();
  EXPECT_EQ(third.done.usage().prompt_tokens(), 0);
  EXPECT_EQ(stored_ids(*stack, "ctx"), joined(all, third.tokens));

  auto engine = reference_engine(*stack, whole_context_config());
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(same_greedy(*engine, context, reference_tokens(*engine, context, 16), second.tokens, "context turn"));
  engine.reset();
  finish_stack(std::move(stack));
}

TEST(ServicesSession, AWorkerOutlivesItsKvstoresRestart) {
  auto stack = start_stack("sess-kvstore-restart", whole_context_flags());
  ASSERT_NE(stack, nullptr);
  auto stub = generation_stub(*stack);
  ASSERT_TRUE(create_session(*stub, "kept").ok());
  const auto prompt = prompt_ids(130, 5);
  Outcome first = generate(*stub, greedy_ids(prompt, 20, "kept"));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  ASSERT_TRUE(stack->restart_kvstore(SIGKILL).ok());
  // The worker sees its attachment end and attaches again at its next request; until then a request
  // may be answered UNAVAILABLE (saying to retry), never anything else.
  Outcome second;
  for (int i = 0; i < 50; ++i) {
    second = generate(*stub, greedy_ids(prompt_ids(6, 6), 10, "kept"));
    if (second.status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(second.done.worker_id(), first.done.worker_id()) << "the same worker serves on";
  EXPECT_TRUE(stack->workers()[0]->running());
  EXPECT_GE(second.done.usage().reused_tokens(), 128) << "the session's pages survived in the pool";
  // One-off requests need the new attachment too (their private sessions live in the kvstore).
  Outcome one_off = generate(*stub, greedy_ids(prompt_ids(40, 7), 5));
  EXPECT_TRUE(one_off.status.ok()) << one_off.status.error_message();
  finish_stack(std::move(stack));
}

}  // namespace
}  // namespace freekv::testing
