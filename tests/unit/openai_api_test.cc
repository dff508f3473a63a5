// The OpenAI completions and chat JSON ⇄ freekv translation (coordinator/openai_api.h): every accepted field
// lands in the GenerateRequest as OpenAI means it (defaults included), what freekv cannot honour is
// refused naming the field, and the responses have OpenAI's shape.
#include <gtest/gtest.h>

#include "coordinator/openai_api.h"
#include "nlohmann/json.hpp"

namespace freekv {
namespace {

using nlohmann::json;

CompletionCall parse_ok(const std::string& body, ApiFlavor flavor = ApiFlavor::kCompletion) {
  CompletionCall call;
  ApiError error;
  EXPECT_TRUE(parse_completion_request(flavor, body, "tiny", &call, &error)) << body << ": " << error.message;
  return call;
}

ApiError parse_error(const std::string& body, ApiFlavor flavor = ApiFlavor::kCompletion) {
  CompletionCall call;
  ApiError error;
  EXPECT_FALSE(parse_completion_request(flavor, body, "tiny", &call, &error)) << body;
  return error;
}

TEST(OpenAiApi, DefaultsAreOpenAis) {
  const CompletionCall c = parse_ok(R"({"prompt": "hello"})");
  EXPECT_EQ(c.request.prompt(), "hello");
  EXPECT_EQ(c.request.max_tokens(), 16);
  EXPECT_EQ(c.request.sampling().temperature(), 1.0);
  EXPECT_EQ(c.request.sampling().top_p(), 1.0);
  EXPECT_FALSE(c.stream);
  EXPECT_FALSE(c.include_usage);
  EXPECT_TRUE(c.request.session_id().empty());
}

TEST(OpenAiApi, EveryFieldLandsWhereItMeansTheSame) {
  const CompletionCall c = parse_ok(R"({"model": "tiny", "prompt": ["one prompt"], "max_tokens": 40,
      "temperature": 0, "top_p": 0.9, "seed": 7, "stop": ["\n\n", "END"], "stream": true,
      "stream_options": {"include_usage": true}, "n": 1, "echo": false, "presence_penalty": 0,
      "freekv": {"session_id": "chat-1", "ignore_eos": true}})");
  EXPECT_EQ(c.request.prompt(), "one prompt");
  EXPECT_EQ(c.request.max_tokens(), 40);
  EXPECT_EQ(c.request.sampling().temperature(), 0.0);
  EXPECT_DOUBLE_EQ(c.request.sampling().top_p(), 0.9);
  EXPECT_EQ(c.request.sampling().seed(), 7u);
  ASSERT_EQ(c.request.stop_size(), 2);
  EXPECT_EQ(c.request.stop(0), "\n\n");
  EXPECT_EQ(c.request.stop(1), "END");
  EXPECT_TRUE(c.stream);
  EXPECT_TRUE(c.include_usage);
  EXPECT_EQ(c.request.session_id(), "chat-1");
  EXPECT_TRUE(c.request.ignore_eos());
  const CompletionCall ids = parse_ok(R"({"prompt": [1, 2, 3], "stop": "x"})");
  ASSERT_EQ(ids.request.prompt_ids().ids_size(), 3);
  EXPECT_EQ(ids.request.prompt_ids().ids(2), 3);
  EXPECT_EQ(ids.request.stop(0), "x");
}

TEST(OpenAiApi, WhatFreekvCannotHonourIsRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt": "x", "n": 2})", "n"},
      {R"({"prompt": "x", "best_of": 3})", "best_of"},
      {R"({"prompt": "x", "logprobs": 2})", "logprobs"},
      {R"({"prompt": "x", "suffix": "y"})", "suffix"},
      {R"({"prompt": "x", "logit_bias": {"1": 5}})", "logit_bias"},
      {R"({"prompt": "x", "frequency_penalty": 0.5})", "frequency_penalty"},
      {R"({"prompt": "x", "echo": true})", "echo"},
      {R"({"prompt": ["a", "b"]})", "prompt"},
      {R"({"prompt": 5})", "prompt"},
      {R"({})", "prompt"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": "ten"})", "max_tokens"},
      {R"({"prompt": "x", "temperature": 2.5})", "temperature"},
      {R"({"prompt": "x", "top_p": 0})", "top_p"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {R"({"prompt": "x", "stream": "yes"})", "stream"},
      {R"({"prompt": "x", "freekv": {"session_id": 3}})", "freekv.session_id"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = parse_error(body);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.param, param) << body;
    EXPECT_EQ(e.type, "invalid_request_error") << body;
    EXPECT_FALSE(e.message.empty());
  }
  const ApiError model = parse_error(R"({"prompt": "x", "model": "gpt-4o"})");
  EXPECT_EQ(model.http_status, 404);
  EXPECT_EQ(model.code, "model_not_found");
  EXPECT_NE(model.message.find("tiny"), std::string::npos) << model.message;
  EXPECT_EQ(parse_error("{not json").http_status, 400);
  EXPECT_EQ(parse_error("[1, 2]").http_status, 400);
}

// A body nested 100,000 levels deep is refused by its depth before anything copies or prints it (both
// recurse: the coordinator's stack would overflow); ordinary nesting passes.
TEST(OpenAiApi, DeeplyNestedBodiesAreRefusedNotStackOverflows) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ApiError error = parse_error(R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                   "freekv": {"chat_template_kwargs": {"x": )" + deep + "}}}",
                               ApiFlavor::kChat);
  EXPECT_NE(error.message.find("nests deeper than 64 levels"), std::string::npos) << error.message;
  EXPECT_EQ(error.http_status, 400);
  parse_ok(R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
              "freekv": {"chat_template_kwargs": {"x": [[[[{"y": [1]}]]]]}}})",
           ApiFlavor::kChat);
}

TEST(OpenAiApi, StatusesMapToHttpCodes) {
  const std::vector<std::pair<absl::Status, int>> cases = {
      {absl::InvalidArgumentError("a"), 400},  {absl::UnauthenticatedError("a"), 401},
      {absl::PermissionDeniedError("a"), 403}, {absl::NotFoundError("a"), 404},
      {absl::FailedPreconditionError("a"), 409}, {absl::ResourceExhaustedError("a"), 429},
      {absl::DeadlineExceededError("a"), 504}, {absl::UnavailableError("a"), 503},
      {absl::InternalError("a"), 503},
  };
  for (const auto& [status, code] : cases) {
    const ApiError e = api_error_from_status(status);
    EXPECT_EQ(e.http_status, code) << status;
    const json j = json::parse(error_json(e));
    EXPECT_EQ(j["error"]["message"], "a");
    EXPECT_EQ(j["error"]["code"], absl::StatusCodeToString(status.code()));
  }
}

TEST(OpenAiApi, ResponsesHaveOpenAisShape) {
  CompletionOutcome o;
  o.text = " world";
  o.finish_reason = "stop";
  o.prompt_tokens = 3;
  o.completion_tokens = 2;
  const json full = json::parse(completion_json(ApiFlavor::kCompletion, "cmpl-1", 100, "tiny", o));
  EXPECT_EQ(full["object"], "text_completion");
  EXPECT_EQ(full["choices"][0]["text"], " world");
  EXPECT_EQ(full["choices"][0]["index"], 0);
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["total_tokens"], 5);
  EXPECT_FALSE(full.contains("freekv"));
  o.session_id = "chat-1";
  EXPECT_EQ(json::parse(completion_json(ApiFlavor::kCompletion, "cmpl-1", 100, "tiny", o))["freekv"]["session_id"], "chat-1");
  const json chunk = json::parse(completion_chunk_json(ApiFlavor::kCompletion, "cmpl-1", 100, "tiny", "he", "", true));
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(chunk["choices"][0]["text"], "he");
  const json usage = json::parse(usage_chunk_json(ApiFlavor::kCompletion, "cmpl-1", 100, "tiny", o));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  EXPECT_EQ(json::parse(models_json("tiny", 100))["data"][0]["id"], "tiny");
}

TEST(OpenAiApi, ChatMessagesBecomeAConversation) {
  const CompletionCall c = parse_ok(R"({"model": "tiny", "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]},
      {"role": "assistant", "content": null},
      {"role": "user", "content": ""}],
      "max_completion_tokens": 9, "temperature": 0,
      "freekv": {"session_id": "c-1", "chat_template_kwargs": {"enable_thinking": false}}})",
                                    ApiFlavor::kChat);
  EXPECT_EQ(c.flavor, ApiFlavor::kChat);
  ASSERT_TRUE(c.request.has_chat());
  ASSERT_EQ(c.request.chat().messages_size(), 4);
  EXPECT_EQ(c.request.chat().messages(0).role(), "system");
  EXPECT_EQ(c.request.chat().messages(1).content(), "part one, part two");
  EXPECT_EQ(c.request.chat().messages(2).content(), "");
  EXPECT_EQ(c.request.max_tokens(), 9);
  EXPECT_EQ(c.request.session_id(), "c-1");
  EXPECT_EQ(json::parse(c.request.chat().template_variables_json()), json({{"enable_thinking", false}}));
  // Without a limit a chat runs to the end of its turn: max_tokens 0 tells the worker so.
  EXPECT_EQ(parse_ok(R"({"messages": [{"role": "user", "content": "hi"}]})", ApiFlavor::kChat).request.max_tokens(), 0);
  EXPECT_EQ(parse_ok(R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})", ApiFlavor::kChat)
                .request.max_tokens(), 5);
}

TEST(OpenAiApi, ChatRefusesWhatItCannotHonourByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": [{"content": "no role"}]})", "messages[0]"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
       "messages[0].content"},
      {R"({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]})", "messages[0].tool_calls"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", "tools"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})", "response_format"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})", "logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0})", "max_completion_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "freekv": {"chat_template_kwargs": "x"}})",
       "freekv.chat_template_kwargs"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = parse_error(body, ApiFlavor::kChat);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.param, param) << body;
  }
  // Template variables belong to chat only.
  EXPECT_EQ(parse_error(R"({"prompt": "x", "freekv": {"chat_template_kwargs": {}}})").param, "freekv.chat_template_kwargs");
}

TEST(OpenAiApi, ChatResponsesHaveOpenAisShape) {
  CompletionOutcome o;
  o.text = "Paris.";
  o.finish_reason = "stop";
  o.prompt_tokens = 20;
  o.completion_tokens = 3;
  const json full = json::parse(completion_json(ApiFlavor::kChat, "chatcmpl-1", 100, "tiny", o));
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Paris."}}));
  EXPECT_FALSE(full["choices"][0].contains("text"));
  EXPECT_EQ(full["usage"]["total_tokens"], 23);
  const json opening = json::parse(completion_chunk_json(ApiFlavor::kChat, "chatcmpl-1", 100, "tiny", "", "", true));
  EXPECT_EQ(opening["object"], "chat.completion.chunk");
  EXPECT_EQ(opening["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  const json piece = json::parse(completion_chunk_json(ApiFlavor::kChat, "chatcmpl-1", 100, "tiny", "Par", "", false));
  EXPECT_EQ(piece["choices"][0]["delta"], json({{"content", "Par"}}));
  EXPECT_TRUE(piece["choices"][0]["finish_reason"].is_null());
  const json last = json::parse(completion_chunk_json(ApiFlavor::kChat, "chatcmpl-1", 100, "tiny", "", "stop", false));
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(json::parse(usage_chunk_json(ApiFlavor::kChat, "chatcmpl-1", 100, "tiny", o))["object"], "chat.completion.chunk");
}

}  // namespace
}  // namespace freekv
