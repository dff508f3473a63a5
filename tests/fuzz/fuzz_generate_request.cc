// Fuzz target: a public Generate request as clients send it — an OpenAI-style JSON body (completions
// and chat) and the gRPC message in protobuf text format (so mutations keep most of the structure and
// change field values and names: valid-looking requests with bad fields) — through every check a
// request meets before a step: the HTTP front's parser, the coordinator's checks and the worker's
// conversion against a model with a chat template. Beyond "never crashes": a request the worker accepts
// has ids inside the vocabulary, max_tokens >= 1 and fits the model's positions, and every refusal
// carries a message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "coordinator/openai_api.h"
#include "coordinator/request_checks.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "worker/model/config.h"
#include "worker/service/request_convert.h"

namespace {

struct Model {
  freekv::ModelConfig config;
  std::unique_ptr<freekv::Tokenizer> tokenizer;
  freekv::ChatTemplate chat_template;
};

const Model& model() {
  static const Model* m = [] {
    auto* out = new Model;
    const std::string dir = FREEKV_TEST_MODEL_DIR;
    auto config = freekv::load_model_config(dir + "/config.json");
    auto tokenizer = freekv::Tokenizer::load(dir + "/tokenizer.json");
    auto chat = freekv::ChatTemplate::load(dir);
    if (!config.ok() || !tokenizer.ok() || !chat.ok()) {
      std::fprintf(stderr, "fuzz_generate_request: cannot load the test model in %s\n", dir.c_str());
      std::abort();
    }
    out->config = *config;
    out->tokenizer = std::move(*tokenizer);
    out->chat_template = std::move(*chat);
    return out;
  }();
  return *m;
}

// Text-format syntax errors are the expected outcome of most mutations: not worth a line each.
class Quiet : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
};

void fail(const char* what) {
  std::fprintf(stderr, "fuzz_generate_request: %s\n", what);
  std::abort();
}

void refused_with_a_message(const absl::Status& s) {
  if (!s.ok() && s.message().empty()) fail("a refusal without a message");
}

// The coordinator's checks, then the worker's conversion with an empty session and with one holding ids.
void check(const freekv::v1::GenerateRequest& r) {
  const Model& m = model();
  absl::Status coordinator = freekv::check_generate_request(r, freekv::CoordinatorLimits{});
  refused_with_a_message(coordinator);
  if (!coordinator.ok()) return;
  for (int64_t session_tokens : {int64_t(0), int64_t(100)}) {
    auto e = freekv::to_engine_request(r, *m.tokenizer, m.chat_template, m.config, session_tokens, freekv::RequestLimits{});
    refused_with_a_message(e.status());
    if (!e.ok()) continue;
    for (int32_t id : e->prompt) {
      if (id < 0 || id >= m.config.vocab) fail("an accepted prompt id is outside the vocabulary");
    }
    if (e->max_tokens < 1) fail("an accepted request generates nothing");
    if (session_tokens + int64_t(e->prompt.size()) + e->max_tokens > m.config.context_limit() && !e->prompt_is_context) {
      fail("an accepted request runs past the model's positions");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (freekv::ApiFlavor flavor : {freekv::ApiFlavor::kCompletion, freekv::ApiFlavor::kChat}) {
    freekv::CompletionCall call;
    freekv::ApiError error;
    if (freekv::parse_completion_request(flavor, text, "random", &call, &error)) {
      check(call.request);
    } else if (error.message.empty() || error.http_status < 400) {
      fail("an HTTP body refused without a message or with a success status");
    }
  }
  freekv::v1::GenerateRequest r;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowPartialMessage(true);
  Quiet quiet;
  parser.RecordErrorsTo(&quiet);
  if (parser.ParseFromString(text, &r)) check(r);
  return 0;
}
