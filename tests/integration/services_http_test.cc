// The coordinator's OpenAI-compatible HTTP API (coordinator/http_front.h) end to end, with real
// processes: a completion over HTTP equals the same request over gRPC (greedy), plain and streamed as
// server-sent events (with the usage chunk), the models list and health; chat completions rendered by
// the model's template equal the gRPC chat answer, and a chat kept in a session reuses its KV and
// answers as a fresh run does, also when the client edits an earlier turn; the errors in OpenAI's shape
// with their HTTP codes (missing key, n > 1, an unknown model, a bad body, an empty conversation, an
// unknown path); the API keys guard the gRPC API too; a client that goes away mid-stream stops its
// generation on the worker; a drain ends streams.
#include <grpcpp/create_channel.h>
#include <grpcpp/support/client_interceptor.h>
#include <httplib.h>

#include <sys/wait.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "services_test_util.h"

namespace freekv::testing {
namespace {

using nlohmann::json;

const std::string kKey = "sk-test-0123456789";
const std::string kPrompt = "The quick brown fox jumps over the lazy dog. The quick brown";

struct HttpStack {
  std::unique_ptr<ServiceStack> stack;
  std::string http_address;  // host:port
};

HttpStack start_http_stack(const std::string& name, std::vector<std::string> coordinator_flags = {}) {
  const std::string keys = absl::StrCat("/tmp/fkt-", name, "-", getpid(), ".keys");
  std::ofstream(keys) << "# test key\n" << kKey << "\n";
  HttpStack s;
  coordinator_flags.push_back("--api_keys_file=" + keys);
  s.stack = start_stack(name, {}, "512MiB", coordinator_flags, "127.0.0.1:0");
  if (s.stack != nullptr) s.http_address = s.stack->http_address();
  std::remove(keys.c_str());
  return s;
}

// Adds `authorization: Bearer <key>` to every call of a channel: the stacks here require API keys on the
// gRPC API as on HTTP.
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(std::string value) : value_(std::move(value)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", value_});
    }
    methods->Proceed();
  }

 private:
  std::string value_;
};

class BearerFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerFactory(std::string key) : value_("Bearer " + std::move(key)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(value_);
  }

 private:
  std::string value_;
};

std::unique_ptr<v1::Generation::Stub> keyed_stub(const ServiceStack& stack, const std::string& key = kKey) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<BearerFactory>(key));
  return v1::Generation::NewStub(grpc::experimental::CreateCustomChannelWithInterceptors(
      stack.coordinator_address(), grpc::InsecureChannelCredentials(), grpc::ChannelArguments(), std::move(factories)));
}

httplib::Client client(const HttpStack& s, bool with_key = true) {
  httplib::Client c("http://" + s.http_address);
  c.set_read_timeout(120, 0);
  if (with_key) c.set_bearer_token_auth(kKey);
  return c;
}

// The greedy gRPC answer to the same text prompt.
Outcome grpc_reference(const ServiceStack& stack, int max_tokens) {
  auto stub = keyed_stub(stack);
  v1::GenerateRequest r;
  r.set_prompt(kPrompt);
  r.set_max_tokens(max_tokens);
  return generate(*stub, r);
}

TEST(ServicesHttp, CompletionsEqualTheGrpcAnswerPlainAndStreamed) {
  HttpStack s = start_http_stack("http-complete");
  ASSERT_NE(s.stack, nullptr);
  const Outcome want = grpc_reference(*s.stack, 24);
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();
  auto c = client(s);

  const json body = {{"model", "freekv"}, {"prompt", kPrompt}, {"max_tokens", 24}, {"temperature", 0}};
  auto plain = c.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(plain) << httplib::to_string(plain.error());
  ASSERT_EQ(plain->status, 200) << plain->body;
  const json got = json::parse(plain->body);
  EXPECT_EQ(got["object"], "text_completion");
  EXPECT_EQ(got["choices"][0]["text"], want.text);
  EXPECT_EQ(got["choices"][0]["finish_reason"], want.done.finish_reason());
  EXPECT_EQ(got["usage"]["completion_tokens"], want.done.usage().generated_tokens());
  EXPECT_EQ(got["usage"]["prompt_tokens"], want.done.usage().prompt_tokens());
  EXPECT_EQ(got["usage"]["total_tokens"], want.done.usage().generated_tokens() + want.done.usage().prompt_tokens());

  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  std::string events;
  auto sse = c.Post("/v1/completions", httplib::Headers{}, streamed.dump(), "application/json");
  ASSERT_TRUE(sse);
  ASSERT_EQ(sse->status, 200) << sse->body;
  EXPECT_EQ(sse->get_header_value("Content-Type"), "text/event-stream");
  std::string text, finish;
  json usage;
  bool done = false;
  int chunks = 0;
  for (absl::string_view line : absl::StrSplit(sse->body, '\n', absl::SkipEmpty())) {
    ASSERT_TRUE(absl::StartsWith(line, "data: ")) << line;
    line.remove_prefix(6);
    ASSERT_FALSE(done) << "an event after [DONE]";
    if (line == "[DONE]") {
      done = true;
      continue;
    }
    const json ev = json::parse(line);
    if (ev.contains("usage")) {
      usage = ev["usage"];
      EXPECT_TRUE(ev["choices"].empty());
      continue;
    }
    ++chunks;
    text += ev["choices"][0]["text"].get<std::string>();
    if (!ev["choices"][0]["finish_reason"].is_null()) finish = ev["choices"][0]["finish_reason"];
  }
  EXPECT_TRUE(done);
  EXPECT_GT(chunks, 2);
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(finish, want.done.finish_reason());
  EXPECT_EQ(usage["completion_tokens"], want.done.usage().generated_tokens());

  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "freekv");
  auto health = client(s, /*with_key=*/false).Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  finish_stack(std::move(s.stack));
}

// A conversation long enough to fill pages of the test model's KV (so a session reuses whole pages).
std::vector<std::pair<std::string, std::string>> conversation() {
  return {{"system", "You are a careful assistant. Answer in one short sentence, and never repeat the question back. "
                     "Keep to plain words; no lists, no code, no quotes."},
          {"user", "What colour is the sky on a clear day?"}};
}

v1::GenerateRequest chat_request(const std::vector<std::pair<std::string, std::string>>& messages, int max_tokens,
                                 const std::string& session = "") {
  v1::GenerateRequest r;
  for (const auto& [role, content] : messages) {
    v1::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role(role);
    m->set_content(content);
  }
  r.set_max_tokens(max_tokens);
  r.set_session_id(session);
  return r;
}

json chat_body(const std::vector<std::pair<std::string, std::string>>& messages, int max_tokens) {
  json body = {{"model", "freekv"}, {"max_completion_tokens", max_tokens}, {"temperature", 0}, {"messages", json::array()}};
  for (const auto& [role, content] : messages) body["messages"].push_back({{"role", role}, {"content", content}});
  return body;
}

TEST(ServicesHttp, ChatCompletionsUseTheTemplateAndKeepTheirKvInASession) {
  HttpStack s = start_http_stack("http-chat");
  ASSERT_NE(s.stack, nullptr);
  auto stub = keyed_stub(*s.stack);
  auto c = client(s);
  const Outcome want = generate(*stub, chat_request(conversation(), 12));
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();
  EXPECT_EQ(want.done.usage().reused_tokens(), 0);

  auto plain = c.Post("/v1/chat/completions", chat_body(conversation(), 12).dump(), "application/json");
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  const json got = json::parse(plain->body);
  EXPECT_EQ(got["object"], "chat.completion");
  EXPECT_EQ(got["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(got["choices"][0]["message"]["content"], want.text);
  EXPECT_EQ(got["choices"][0]["finish_reason"], want.done.finish_reason());
  EXPECT_EQ(got["usage"]["prompt_tokens"], want.done.usage().prompt_tokens());
  EXPECT_EQ(got["usage"]["completion_tokens"], want.done.usage().generated_tokens());

  json streamed = chat_body(conversation(), 12);
  streamed["stream"] = true;
  auto sse = c.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(sse);
  ASSERT_EQ(sse->status, 200) << sse->body;
  std::string text, role, finish;
  for (absl::string_view line : absl::StrSplit(sse->body, '\n', absl::SkipEmpty())) {
    ASSERT_TRUE(absl::StartsWith(line, "data: ")) << line;
    line.remove_prefix(6);
    if (line == "[DONE]") continue;
    const json ev = json::parse(line);
    EXPECT_EQ(ev["object"], "chat.completion.chunk");
    const json& delta = ev["choices"][0]["delta"];
    if (delta.contains("role")) {
      EXPECT_TRUE(role.empty()) << "the role comes once, first";
      EXPECT_TRUE(text.empty());
      role = delta["role"];
    }
    if (delta.contains("content")) text += delta["content"].get<std::string>();
    if (!ev["choices"][0]["finish_reason"].is_null()) finish = ev["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(role, "assistant");
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(finish, want.done.finish_reason());

  // A chat in a session: every turn sends the whole conversation; the session keeps what it shares.
  ASSERT_TRUE(create_session(*stub, "chat-kept").ok());
  json first = chat_body(conversation(), 12);
  first["freekv"] = {{"session_id", "chat-kept"}};
  auto turn1 = c.Post("/v1/chat/completions", first.dump(), "application/json");
  ASSERT_TRUE(turn1);
  ASSERT_EQ(turn1->status, 200) << turn1->body;
  const std::string reply = json::parse(turn1->body)["choices"][0]["message"]["content"];
  EXPECT_EQ(reply, want.text);
  auto second = conversation();
  second.emplace_back("assistant", reply);
  second.emplace_back("user", "And at sunset?");
  const Outcome fresh = generate(*stub, chat_request(second, 10));
  const Outcome kept = generate(*stub, chat_request(second, 10, "chat-kept"));
  ASSERT_TRUE(fresh.status.ok()) << fresh.status.error_message();
  ASSERT_TRUE(kept.status.ok()) << kept.status.error_message();
  EXPECT_GT(kept.done.usage().reused_tokens(), 0) << "the second turn did not reuse the first turn's KV";
  EXPECT_LT(kept.done.usage().prompt_tokens(), fresh.done.usage().prompt_tokens());
  EXPECT_EQ(kept.done.usage().prompt_tokens() + kept.done.usage().reused_tokens() + kept.done.usage().replayed_tokens(),
            fresh.done.usage().prompt_tokens())
      << "prefilled + reused + replayed must be the whole conversation";
  EXPECT_EQ(kept.tokens, fresh.tokens) << "a chat continued in its session answers as a fresh run does";

  // A retry of the same turn (regenerate): the session drops the answer it holds, keeps the whole
  // conversation, prefills nothing new, and answers the same.
  const Outcome retried = generate(*stub, chat_request(second, 10, "chat-kept"));
  ASSERT_TRUE(retried.status.ok()) << retried.status.error_message();
  EXPECT_EQ(retried.tokens, fresh.tokens);
  EXPECT_EQ(retried.done.usage().prompt_tokens(), 0);
  EXPECT_EQ(retried.done.usage().reused_tokens() + retried.done.usage().replayed_tokens(), fresh.done.usage().prompt_tokens());

  // The client edits the first user turn: the session drops what no longer matches and still answers as
  // a fresh run of the edited conversation does.
  auto edited = second;
  edited[1].second = "What colour is grass?";
  const Outcome edited_fresh = generate(*stub, chat_request(edited, 10));
  const Outcome edited_kept = generate(*stub, chat_request(edited, 10, "chat-kept"));
  ASSERT_TRUE(edited_kept.status.ok()) << edited_kept.status.error_message();
  EXPECT_EQ(edited_kept.tokens, edited_fresh.tokens);
  EXPECT_GT(edited_kept.done.usage().prompt_tokens(), kept.done.usage().prompt_tokens())
      << "the edited turn and everything after it are prefilled again";
  EXPECT_LE(edited_kept.done.usage().reused_tokens(), kept.done.usage().reused_tokens());
  EXPECT_EQ(edited_kept.done.usage().session_tokens(),
            edited_fresh.done.usage().prompt_tokens() + int64_t(edited_kept.tokens.size()))
      << "the session holds exactly the edited conversation and its answer";
  finish_stack(std::move(s.stack));
}

TEST(ServicesHttp, TheApiKeysGuardTheGrpcApiToo) {
  HttpStack s = start_http_stack("http-grpc-keys");
  ASSERT_NE(s.stack, nullptr);
  v1::GenerateRequest r;
  r.set_prompt(kPrompt);
  r.set_max_tokens(4);
  auto open = generation_stub(*s.stack);
  const Outcome without = generate(*open, r);
  EXPECT_EQ(without.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << without.status.error_message();
  EXPECT_EQ(without.status.error_message().find(kKey), std::string::npos) << "an error repeated a key";
  EXPECT_EQ(create_session(*open, "no-key").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const Outcome wrong = generate(*keyed_stub(*s.stack, "sk-test-0123456788"), r);
  EXPECT_EQ(wrong.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto keyed = keyed_stub(*s.stack);
  const Outcome right = generate(*keyed, r);
  ASSERT_TRUE(right.status.ok()) << right.status.error_message();
  EXPECT_EQ(right.done.usage().generated_tokens(), 4);
  EXPECT_TRUE(create_session(*keyed, "with-key").ok());
  finish_stack(std::move(s.stack));
}

TEST(ServicesHttp, ErrorsInOpenAisShapeWithTheirCodes) {
  HttpStack s = start_http_stack("http-errors");
  ASSERT_NE(s.stack, nullptr);
  auto c = client(s);
  auto expect_error = [&](httplib::Client& cl, const std::string& path, const std::string& body, int status,
                          const std::string& param) {
    auto r = cl.Post(path, body, "application/json");
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    const json e = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
    if (!param.empty()) {
      EXPECT_EQ(e["error"]["param"], param) << r->body;
    }
  };
  auto no_key = client(s, false);
  expect_error(no_key, "/v1/completions", R"({"prompt":"x"})", 401, "");
  expect_error(c, "/v1/completions", R"({"prompt":"x","n":2})", 400, "n");
  expect_error(c, "/v1/completions", R"({"prompt":"x","model":"gpt-4"})", 404, "model");
  expect_error(c, "/v1/completions", R"({"prompt":"x","max_tokens":0})", 400, "max_tokens");
  expect_error(c, "/v1/completions", R"({"prompt":"x","logprobs":3})", 400, "logprobs");
  expect_error(c, "/v1/completions", R"({"prompt":"x","temperature":-1})", 400, "temperature");
  expect_error(c, "/v1/completions", "not json", 400, "");
  expect_error(c, "/v1/completions", R"({"prompt":"x","freekv":{"session_id":"no-such-session"}})", 404, "");
  expect_error(c, "/v1/chat/completions", R"({"messages":[]})", 400, "messages");
  expect_error(c, "/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"tools":[]})", 400, "tools");
  expect_error(c, "/v1/nothing", "{}", 404, "");
  finish_stack(std::move(s.stack));
}

// The request runs in a kept session, so the kvstore's count of its tokens after the hang-up shows how
// far generation went: far short of the 3000 tokens asked for.
TEST(ServicesHttp, AClientThatGoesAwayStopsItsGeneration) {
  HttpStack s = start_http_stack("http-cancel");
  ASSERT_NE(s.stack, nullptr);
  auto stub = keyed_stub(*s.stack);
  ASSERT_TRUE(create_session(*stub, "http-cancel").ok());
  auto c = client(s);
  const json body = {{"prompt", kPrompt}, {"max_tokens", 3000}, {"stream", true},
                     {"freekv", {{"ignore_eos", true}, {"session_id", "http-cancel"}}}};
  int received = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++received < 3; };  // then hang up
  c.send(req);
  EXPECT_GE(received, 3);
  auto admin = admin_stub(*s.stack);
  v1::AdminGetSessionResponse session;
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    add_bearer(&ctx, token_of(*s.stack));
    v1::AdminGetSessionRequest get;
    get.set_session_id("http-cancel");
    ASSERT_TRUE(admin->GetSession(&ctx, get, &session).ok());
    if (!session.session().summary().generating()) break;
  }
  EXPECT_FALSE(session.session().summary().generating()) << "the generation kept running after its client went away";
  EXPECT_LT(session.session().summary().tokens(), 1000u) << "it was not stopped early";
  EXPECT_GT(session.session().summary().tokens(), 0u);
  finish_stack(std::move(s.stack));
}

// SIGTERM with a stream in flight: the coordinator drains (the stream ends after the grace with an
// in-band UNAVAILABLE error and [DONE]) and exits 0, without waiting for the 3000 tokens.
TEST(ServicesHttp, ADrainEndsHttpStreamsAfterTheGrace) {
  HttpStack s = start_http_stack("http-drain", {"--drain_grace_ms=500"});
  ASSERT_NE(s.stack, nullptr);
  auto c = client(s);
  const json body = {{"prompt", kPrompt}, {"max_tokens", 3000}, {"stream", true}, {"freekv", {{"ignore_eos", true}}}};
  std::string events;
  std::thread reader([&] {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      events.append(data, n);
      return true;
    };
    c.send(req);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const auto t0 = std::chrono::steady_clock::now();
  s.stack->coordinator().signal(SIGTERM);
  int status = 0;
  while (s.stack->coordinator().running(&status) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  reader.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  EXPECT_LT(seconds, 5.0) << "the coordinator waited on the stream instead of draining it";
  EXPECT_NE(events.find("\"code\":\"UNAVAILABLE\""), std::string::npos) << events.substr(events.size() > 400 ? events.size() - 400 : 0);
  EXPECT_NE(events.find("data: [DONE]"), std::string::npos);
  finish_stack(std::move(s.stack));
}

}  // namespace
}  // namespace freekv::testing
