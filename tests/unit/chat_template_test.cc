// freekv's chat-template renderer where the reference comparison (tests/chat) cannot look: errors a
// person must be able to act on, the bounds that keep a hostile conversation from exhausting a worker,
// and the config forms of tokenizer_config.json.
#include <gtest/gtest.h>

#include "worker/chat/chat_template.h"
#include "worker/chat/jinja_value.h"

namespace freekv {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> render(const std::string& text, const std::vector<ChatMessage>& messages = {{"user", "hi"}},
                                   const json& variables = nullptr) {
  FREEKV_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::from_config({{"chat_template", text}, {"bos_token", "<s>"}}, "cfg.json"));
  return t.render(messages, variables);
}

TEST(ChatTemplate, RendersMessagesAndSpecialTokens) {
  auto out = render("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                    "{% if add_generation_prompt %}<assistant>{% endif %}",
                    {{"system", "be brief"}, {"user", "hi"}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s><system>be brief<user>hi<assistant>");
}

TEST(ChatTemplate, CallerVariablesReachTheTemplateButCannotReplaceMessages) {
  auto out = render("{{ 'on' if enable_thinking is not defined or enable_thinking else 'off' }}", {{"user", "x"}},
                    {{"enable_thinking", false}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "off");
  auto refused = render("{{ messages }}", {{"user", "x"}}, {{"messages", json::array()}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplate, ModelWithoutTemplateRefusesChatWithAClearError) {
  auto t = ChatTemplate::from_config({{"eos_token", "</s>"}}, "models/base/tokenizer_config.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(t->available());
  auto out = t->render({{"user", "hi"}});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(out.status().message().find("no chat template"), std::string_view::npos) << out.status();
  EXPECT_NE(out.status().message().find("models/base/tokenizer_config.json"), std::string_view::npos);
  EXPECT_EQ(t->eos_token(), "</s>");
}

TEST(ChatTemplate, ConfigForms) {
  // A list of named templates: "default" is used; special tokens may be AddedToken objects.
  json config = {{"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                {{"name", "default"}, {"template", "D{{ eos_token }}"}}})},
                 {"eos_token", {{"content", "<|im_end|>"}, {"special", true}}}};
  auto t = ChatTemplate::from_config(config, "cfg.json");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->render({{"user", "x"}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "D<|im_end|>");
  EXPECT_EQ(t->eos_token(), "<|im_end|>");

  auto no_default = ChatTemplate::from_config({{"chat_template", json::array({{{"name", "rag"}, {"template", "R"}}})}}, "cfg.json");
  EXPECT_EQ(no_default.status().code(), absl::StatusCode::kInvalidArgument);
  auto wrong_type = ChatTemplate::from_config({{"chat_template", 3}}, "cfg.json");
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_type.status().message().find("cfg.json"), std::string_view::npos);
}

TEST(ChatTemplate, EmptyConversationIsRefused) {
  auto out = render("{{ messages | length }}", {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplate, SyntaxErrorsNameTheLineAndWhat) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"ok\n{% if x %}\nno end", "line 2"},
      {"{{ 'unclosed }}", "never closed"},
      {"{% call foo() %}x{% endcall %}", "{% call %} is not supported"},
      {"{{ a[ }}", "line 1"},
      {"{{ 'bad \\q escape' }}", "unknown escape \\q"},
      {"{# open comment", "never closed"},
      {"{{ x | }}", "filter name"},
  };
  for (const Case& c : cases) {
    auto out = render(c.text);
    ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(out.status().message().find(c.expect), std::string_view::npos) << c.text << " -> " << out.status();
    EXPECT_NE(out.status().message().find("cfg.json"), std::string_view::npos) << out.status();
  }
}

TEST(ChatTemplate, RenderErrorsCarryTheTemplatesMessage) {
  auto out = render("{% if messages[0].role != 'system' %}{{ raise_exception('Conversations must start with a system "
                    "message') }}{% endif %}");
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("Conversations must start with a system message"), std::string_view::npos)
      << out.status();
  auto unknown = render("\n\n{{ messages | shuffle }}");
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("line 3"), std::string_view::npos) << unknown.status();
  EXPECT_NE(unknown.status().message().find("'shuffle'"), std::string_view::npos) << unknown.status();
  auto not_callable = render("{{ messages() }}");
  EXPECT_NE(not_callable.status().message().find("'messages' is a list, not a function"), std::string_view::npos)
      << not_callable.status();
}

TEST(ChatTemplate, RunawayTemplatesStopAtTheirBounds) {
  auto loops = render("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(2) %}{% endfor %}"
                      "{% endfor %}{% endfor %}");
  ASSERT_EQ(loops.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loops.status().message().find("loop iterations"), std::string_view::npos) << loops.status();
  auto doubling = render("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}");
  ASSERT_EQ(doubling.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(doubling.status().message().find("MiB"), std::string_view::npos) << doubling.status();
  auto recursion = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_EQ(recursion.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(recursion.status().message().find("nest deeper"), std::string_view::npos) << recursion.status();
}

TEST(ChatTemplate, DeepTemplatesAreRefusedNotStackOverflows) {
  std::string chain = "{{ 1";
  for (int i = 0; i < 20000; ++i) chain += " + 1";
  auto long_chain = render(chain + " }}");
  ASSERT_EQ(long_chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_chain.status().message().find("deeper than"), std::string_view::npos) << long_chain.status();
  auto parens = render("{{ " + std::string(20000, '(') + "1" + std::string(20000, ')') + " }}");
  ASSERT_EQ(parens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parens.status().message().find("nested deeper"), std::string_view::npos) << parens.status();
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  auto blocks = render(ifs);
  ASSERT_EQ(blocks.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(blocks.status().message().find("nested deeper"), std::string_view::npos) << blocks.status();
  // A chain within the bounds still renders.
  std::string fine = "{{ 0";
  for (int i = 0; i < 300; ++i) fine += " + 1";
  auto ok = render(fine + " }}");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "300");
}

// What a render makes is freed when it ends, cycles included (a macro kept in the scope it captures, a
// namespace holding itself): the first sanitizer run of the template fuzzer found the macro case leaking
// on every render. Emptying everything before freeing also frees a value nested 200,000 deep without
// recursing that deep.
TEST(ChatTemplate, ARenderFreesWhatItMadeCyclesAndDeepNestsIncluded) {
  std::weak_ptr<jinja::Dict> self_held;
  std::weak_ptr<jinja::Function> closure;
  {
    const jinja::CycleBreaker breaker;
    jinja::Value ns = jinja::Value::namespace_of({});
    ns.dict->set("me", ns);
    jinja::Value f = jinja::Value::callable([ns](const jinja::CallArgs&) { return ns; });
    ns.dict->set("f", f);
    self_held = ns.dict;
    closure = f.function;
  }
  EXPECT_TRUE(self_held.expired());
  EXPECT_TRUE(closure.expired());
  auto macro = render("{% macro greet(n) %}hi {{ n }}{% endmacro %}{% set ns = namespace() %}{% set ns.me = ns %}"
                      "{{ greet('you') }}");
  ASSERT_TRUE(macro.ok()) << macro.status();
  EXPECT_EQ(*macro, "hi you");
  auto deep = render("{% set ns = namespace(x=[]) %}{% for i in range(200000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                     "{{ ns.x | length }}");
  ASSERT_TRUE(deep.ok()) << deep.status();
  EXPECT_EQ(*deep, "1");
}

// Template variables are a client's JSON: nested 100,000 deep they are refused by depth before they are
// copied or converted (both recurse), not a stack overflow in the worker.
TEST(ChatTemplate, DeeplyNestedVariablesAreRefused) {
  json variables = json::object();
  variables["x"] = json::parse(std::string(100000, '[') + std::string(100000, ']'));  // parsing does not recurse
  auto r = render("{{ x }}", {{"user", "hi"}}, variables);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nest deeper than 64"), std::string_view::npos) << r.status();
}

TEST(ChatTemplate, ClientTextIsDataNotTemplate) {
  auto out = render("{{ messages[0].content }}", {{"user", "{{ 7 * 6 }} {% raise %}"}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "{{ 7 * 6 }} {% raise %}");
}

TEST(ChatTemplate, LoopControlFollowsPythonJinja) {
  // Text before break/continue stays; else runs only without items.
  auto out = render("{% for i in [1, 2, 3] %}<{{ i }}>{% if i == 2 %}{% break %}{% endif %}{% endfor %}|"
                    "{% for i in [1, 2] %}{% continue %}{% else %}empty{% endfor %}|"
                    "{% for i in [] %}x{% else %}empty{% endfor %}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<1><2>||empty");
}

}  // namespace
}  // namespace freekv
