// `freekv generate`: one request to a running coordinator (freekv up), streaming the text to stdout as
// the tokens arrive. With --json, one JSON object per line: each chunk as it arrives, then the final
// one with usage, retrieval statistics and every generated id.

#include <chrono>
#include <cstdio>
#include <iostream>

#include "common/file_util.h"
#include "common/grpc_util.h"
#include "common/tls.h"
#include "freekv/v1/generation.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/request_flags.h"

namespace freekv {
namespace {

int report_grpc(const grpc::Status& s, const std::string& doing) {
  std::fprintf(stderr, "freekv generate: %s: %s: %s\n", doing.c_str(),
               absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(), s.error_message().c_str());
  return 1;
}

nlohmann::json proto_json(const google::protobuf::Message& m) { return nlohmann::json::parse(proto_to_json(m, false)); }

}  // namespace

int cmd_generate(int argc, char** argv) {
  std::string coordinator = "127.0.0.1:50051", session, api_key_file, tls_ca_file;
  int64_t timeout_s = 0;
  bool json = false, new_session = false;
  RequestFlags request;
  ArgParser p("freekv generate [--coordinator ADDR] (--prompt TEXT | --prompt-file F) [--chat [--system TEXT] [--messages F]] "
              "[--session ID [--new-session]] [--max-tokens N] [--json]",
              "Sends one generation request to a coordinator (see `freekv up`) and streams the text as it arrives.");
  p.add_string("coordinator", &coordinator, "coordinator address host:port");
  p.add_string("api-key-file", &api_key_file, "a file holding the API key the coordinator asks for (its --api-keys-file)");
  p.add_string("tls-ca-file", &tls_ca_file,
               "PEM certificates to verify a coordinator serving TLS with (its certificate, or the CA that signed it)");
  request.add_to(p);
  p.add_string("session", &session, "continue this session: its KV is reused, and this turn is added to it");
  p.add_bool("new-session", &new_session, "create the session first (the --session id, or a fresh one) and print its id");
  p.add_int("timeout", &timeout_s, "give up after this many seconds (0 = never); the worker stops generating then");
  p.add_bool("json", &json, "print JSON lines: one per chunk as it arrives, then one with usage and retrieval stats");
  if (int rc = handle_parse_result(p, p.parse(argc, argv)); rc >= 0) return rc;
  auto prompt = request.read_prompt();
  if (!prompt.ok()) return report_error("generate", prompt.status());
  auto messages = request.chat_messages(*prompt);
  if (!messages.ok()) return report_error("generate", messages.status());
  if (prompt->empty() && session.empty() && !request.chat) {
    return report_error("generate", absl::InvalidArgumentError("give --prompt or --prompt-file (or --session to continue one)"));
  }

  std::string api_key;
  if (!api_key_file.empty()) {
    auto keys = read_api_keys(api_key_file);
    if (!keys.ok()) return report_error("generate", keys.status());
    if (keys->size() != 1) {
      return report_error("generate", absl::InvalidArgumentError(absl::StrCat(api_key_file, " holds ", keys->size(),
                                                                              " keys; a client sends one: keep one line")));
    }
    api_key = *keys->begin();
  }
  auto credentials = channel_credentials(tls_ca_file);
  if (!credentials.ok()) return report_error("generate", credentials.status());
  auto stub = v1::Generation::NewStub(make_channel(coordinator, *credentials));
  if (new_session) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline_in(10000));
    add_bearer(&ctx, api_key);
    v1::CreateSessionRequest req;
    req.set_session_id(session);
    v1::CreateSessionResponse resp;
    grpc::Status s = stub->CreateSession(&ctx, req, &resp);
    if (!s.ok()) return report_grpc(s, "cannot create the session");
    session = resp.session_id();
    std::fprintf(stderr, "session: %s (continue it with --session %s)\n", session.c_str(), session.c_str());
  }

  v1::GenerateRequest req;
  if (request.chat) {
    // The conversation is the session's whole context: a session keeps the part it shares with it.
    for (const ChatMessage& m : *messages) {
      v1::ChatMessage* out = req.mutable_chat()->add_messages();
      out->set_role(m.role);
      out->set_content(m.content);
    }
  } else {
    req.set_prompt(*prompt);
  }
  req.set_session_id(session);
  req.set_max_tokens(int32_t(std::min<int64_t>(request.max_tokens, INT32_MAX)));
  req.mutable_sampling()->set_temperature(request.temperature);
  req.mutable_sampling()->set_top_k(int32_t(request.top_k));
  req.mutable_sampling()->set_top_p(request.top_p);
  req.mutable_sampling()->set_seed(uint64_t(request.seed));
  for (const auto& s : request.stops) req.add_stop(s);
  req.set_ignore_eos(request.ignore_eos);
  req.set_raw_prompt(request.raw_prompt);

  grpc::ClientContext ctx;
  add_bearer(&ctx, api_key);
  if (timeout_s > 0) ctx.set_deadline(deadline_in(timeout_s * 1000));
  const auto t0 = std::chrono::steady_clock::now();
  double first_token = -1;
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  v1::GenerateDone done;
  std::vector<int32_t> tokens;
  std::string text;
  while (reader->Read(&msg)) {
    if (msg.has_chunk()) {
      if (first_token < 0) first_token = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      tokens.insert(tokens.end(), msg.chunk().token_ids().begin(), msg.chunk().token_ids().end());
      text += msg.chunk().text();
      if (json) {
        std::cout << nlohmann::json{{"token_ids", std::vector<int32_t>(msg.chunk().token_ids().begin(), msg.chunk().token_ids().end())},
                                    {"text", msg.chunk().text()}}
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                  << std::endl;
      } else {
        std::fwrite(msg.chunk().text().data(), 1, msg.chunk().text().size(), stdout);
        std::fflush(stdout);
      }
    } else if (msg.has_done()) {
      done = msg.done();
    }
  }
  grpc::Status s = reader->Finish();
  if (!json && !text.empty()) std::printf("\n");
  if (!s.ok()) {
    if (!tokens.empty()) std::fprintf(stderr, "freekv generate: the stream ended after %zu tokens\n", tokens.size());
    return report_grpc(s, "generation failed");
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const v1::Usage& u = done.usage();
  if (json) {
    nlohmann::json j = proto_json(done);
    j["tokens"] = tokens;
    j["text"] = text;
    j["client_seconds"] = total;
    j["client_time_to_first_token_seconds"] = first_token;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::fprintf(stderr,
                 "freekv generate: %lld prompt tokens (%lld reused from the session), %lld generated in %.3f s "
                 "(first token after %.3f s), finish: %s, worker %s%s%s\n",
                 (long long)u.prompt_tokens(), (long long)u.reused_tokens(), (long long)u.generated_tokens(), total,
                 first_token, done.finish_reason().c_str(), done.worker_id().c_str(),
                 done.session_id().empty() ? "" : ", session ", done.session_id().c_str());
  }
  return 0;
}

}  // namespace freekv
