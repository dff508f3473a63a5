// The values a chat template computes with: Jinja's none/undefined, booleans, integers, floats, strings,
// lists, dicts (insertion-ordered, string keys, as JSON objects) and namespaces, plus callables (the
// builtin functions, string and dict methods, and the template's macros).
//
// Semantics follow @huggingface/jinja, the renderer the chat templates are tested against (tests/chat):
// == compares numbers by value and strings by content, lists and dicts by identity; none and undefined
// print as nothing, booleans as "true"/"false"; empty strings, lists and dicts are false.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace freekv::jinja {

// Thrown while rendering or parsing; the Template API turns it into an INVALID_ARGUMENT status. The
// evaluator is recursive, so an error unwinds the whole render: an exception says that directly.
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Value;
using List = std::vector<Value>;
// Insertion-ordered string-keyed map: templates iterate dicts in the order their JSON gave.
class Dict {
 public:
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  void clear() { items_.clear(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};
// Positional arguments, then keyword arguments in call order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* keyword_arg(std::string_view name) const;
};
using Function = std::function<Value(const CallArgs& args)>;

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction };

struct Value {
  Value() = default;
  explicit Value(Kind k) : kind(k) {}

  Kind kind = Kind::kUndefined;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string text;
  std::shared_ptr<List> list;          // kList (shared: lists are references, as in Python)
  std::shared_ptr<Dict> dict;          // kDict and kNamespace
  std::shared_ptr<Function> function;  // kFunction

  static Value none() { return Value(Kind::kNone); }
  static Value of(bool b);
  static Value of(int64_t i);
  static Value of(double d);
  static Value of(std::string s);
  static Value of(List items);
  static Value of(Dict entries);
  static Value namespace_of(Dict entries);
  static Value callable(Function fn);
  static Value from_json(const nlohmann::json& j);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_mapping() const { return kind == Kind::kDict || kind == Kind::kNamespace; }
  double as_double() const { return kind == Kind::kInt ? double(integer) : number; }

  bool truthy() const;
  // What {{ value }} prints.
  std::string to_output() const;
};

// Breaks the reference cycles a template can make — a macro kept in the scope it captures, `ns.me = ns`,
// a list appended to itself — which shared pointers alone would leak on every render. While one is
// alive on a thread, every list, dict and function made on that thread is noted; its destructor empties
// all of those still alive while holding them, so each is then freed empty (a value nested 200,000 deep
// is freed without recursing 200,000 deep). Template::render holds one: nothing it made is used after.
class CycleBreaker {
 public:
  CycleBreaker();
  ~CycleBreaker();
  CycleBreaker(const CycleBreaker&) = delete;
  CycleBreaker& operator=(const CycleBreaker&) = delete;
  // Notes v's container, if v has one and a breaker is active on this thread.
  static void note(const Value& v);

 private:
  struct Made {
    std::weak_ptr<List> list;
    std::weak_ptr<Dict> dict;
    std::weak_ptr<Function> function;
  };
  CycleBreaker* outer_;
  std::vector<Made> made_;
};

const char* kind_name(Kind kind);
bool loosely_equal(const Value& a, const Value& b);
// JSON text as the tojson filter writes it: ", " and ": " separators, or with indent > 0 one item per
// line; non-ASCII kept as UTF-8.
std::string to_json_text(const Value& value, int indent, int depth = 0);

}  // namespace freekv::jinja
