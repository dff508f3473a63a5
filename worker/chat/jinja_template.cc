#include "worker/chat/jinja_template.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/chat/jinja_builtins.h"
#include "worker/chat/jinja_parser.h"

namespace freekv::jinja {
namespace {

// Variables of one frame (the render, a for loop, a macro call); lookups walk out to the enclosing ones.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  Value lookup(const std::string& name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
      if (const Value* v = s->vars_.find(name)) return *v;
    }
    return Value{};
  }
  void set(const std::string& name, Value value) { vars_.set(name, std::move(value)); }

 private:
  std::shared_ptr<Scope> parent_;
  Dict vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

// break and continue unwind to their loop.
struct LoopControl {
  bool is_break;
};

class Renderer {
 public:
  std::string render(const std::vector<NodePtr>& program, const ScopePtr& scope) {
    std::string out;
    block(program, scope, &out);
    return out;
  }

 private:
  [[noreturn]] static void fail(const Node& at, const std::string& message) {
    throw TemplateError(absl::StrCat("line ", at.line, ": ", message));
  }
  void count_step(const Node& at) {
    if (++steps_ > Template::kMaxSteps) fail(at, absl::StrCat("more than ", Template::kMaxSteps, " loop iterations and macro calls"));
  }
  void emit(const Node& at, std::string_view text, std::string* out) {
    if (out->size() + text.size() > Template::kMaxOutputBytes) {
      fail(at, absl::StrCat("the rendered text passes ", Template::kMaxOutputBytes >> 20, " MiB"));
    }
    out->append(text);
  }

  void block(const std::vector<NodePtr>& nodes, const ScopePtr& scope, std::string* out) {
    for (const NodePtr& n : nodes) statement(*n, scope, out);
  }

  void statement(const Node& n, const ScopePtr& scope, std::string* out) {
    switch (n.kind) {
      case NodeKind::kText: emit(n, n.name, out); return;
      case NodeKind::kOutput: emit(n, eval(*n.args[0], scope).to_output(), out); return;
      case NodeKind::kIf: block(eval(*n.args[0], scope).truthy() ? n.body : n.else_body, scope, out); return;
      case NodeKind::kFor: for_loop(n, scope, out); return;
      case NodeKind::kSet: {
        Value value;
        if (n.args[1]) {
          value = eval(*n.args[1], scope);
        } else {
          std::string text;
          block(n.body, scope, &text);
          value = Value::of(std::move(text));
        }
        assign(*n.args[0], std::move(value), scope);
        return;
      }
      case NodeKind::kMacro: scope->set(n.name, macro(n, scope)); return;
      case NodeKind::kBreak: throw LoopControl{true};
      case NodeKind::kContinue: throw LoopControl{false};
      default: emit(n, eval(n, scope).to_output(), out); return;
    }
  }

  void assign(const Node& target, Value value, const ScopePtr& scope) {
    if (target.kind == NodeKind::kName) {
      scope->set(target.name, std::move(value));
    } else if (target.kind == NodeKind::kMember) {
      Value object = eval(*target.args[0], scope);
      if (object.kind != Kind::kNamespace) {
        fail(target, absl::StrCat("only a namespace's attributes can be set; '", target.args[0]->name, "' is a ",
                                  kind_name(object.kind)));
      }
      object.dict->set(target.name, std::move(value));
    } else {  // kTuple
      if (value.kind != Kind::kList || value.list->size() != target.args.size()) {
        fail(target, absl::StrCat("cannot unpack a ", kind_name(value.kind), " into ", target.args.size(), " names"));
      }
      for (size_t i = 0; i < target.args.size(); ++i) assign(*target.args[i], (*value.list)[i], scope);
    }
  }

  void for_loop(const Node& n, const ScopePtr& outer, std::string* out) {
    auto scope = std::make_shared<Scope>(outer);
    const Node* iterable_node = n.args[1].get();
    const Node* filter = nullptr;
    if (iterable_node->kind == NodeKind::kSelect) {
      filter = iterable_node->args[1].get();
      iterable_node = iterable_node->args[0].get();
    }
    Value iterable = eval(*iterable_node, scope);
    if (iterable.kind == Kind::kDict) iterable = member(iterable, "keys").function->operator()({});
    if (iterable.kind != Kind::kList) fail(n, absl::StrCat("a for loop needs a list or dict, got ", kind_name(iterable.kind)));
    List items;
    for (const Value& item : *iterable.list) {
      if (filter != nullptr) {
        auto probe = std::make_shared<Scope>(scope);
        assign(*n.args[0], item, probe);
        if (!eval(*filter, probe).truthy()) continue;
      }
      items.push_back(item);
    }
    // As in Python's Jinja: the else block runs when there is nothing to iterate, and what an iteration
    // wrote before its break or continue stays (the reference renderer drops it, and runs else when no
    // iteration ended without one; tests/chat/templates keep off those two differences).
    const int64_t count = int64_t(items.size());
    for (int64_t i = 0; i < count; ++i) {
      count_step(n);
      Dict loop;
      loop.set("index", Value::of(i + 1));
      loop.set("index0", Value::of(i));
      loop.set("revindex", Value::of(count - i));
      loop.set("revindex0", Value::of(count - i - 1));
      loop.set("first", Value::of(i == 0));
      loop.set("last", Value::of(i == count - 1));
      loop.set("length", Value::of(count));
      loop.set("previtem", i > 0 ? items[size_t(i - 1)] : Value{});
      loop.set("nextitem", i + 1 < count ? items[size_t(i + 1)] : Value{});
      scope->set("loop", Value::of(std::move(loop)));
      assign(*n.args[0], items[size_t(i)], scope);
      try {
        block(n.body, scope, out);
      } catch (const LoopControl& control) {
        if (control.is_break) break;
      }
    }
    if (items.empty()) block(n.else_body, scope, out);
  }

  Value macro(const Node& n, const ScopePtr& defined_in) {
    return Value::callable([this, &n, defined_in](const CallArgs& a) {
      count_step(n);
      if (++macro_depth_ > 64) fail(n, absl::StrCat("macro '", n.name, "' calls nest deeper than 64"));
      auto scope = std::make_shared<Scope>(defined_in);
      const size_t params = n.keywords.size();
      if (a.positional.size() > params) fail(n, absl::StrCat("macro '", n.name, "' takes ", params, " arguments"));
      for (size_t i = 0; i < params; ++i) {
        const Value* kw = a.keyword_arg(n.keywords[i]);
        if (i < a.positional.size()) {
          scope->set(n.keywords[i], a.positional[i]);
        } else if (kw != nullptr) {
          scope->set(n.keywords[i], *kw);
        } else {
          scope->set(n.keywords[i], n.args[i] ? eval(*n.args[i], scope) : Value{});
        }
      }
      std::string text;
      block(n.body, scope, &text);
      --macro_depth_;
      return Value::of(std::move(text));
    });
  }

  CallArgs arguments(const Node& n, size_t first, const ScopePtr& scope) {
    CallArgs a;
    for (size_t i = first; i < n.args.size(); ++i) {
      Value v = eval(*n.args[i], scope);
      if (n.keywords[i].empty()) {
        a.positional.push_back(std::move(v));
      } else {
        a.keyword.emplace_back(n.keywords[i], std::move(v));
      }
    }
    return a;
  }

  Value eval(const Node& n, const ScopePtr& scope) {
    // Expression trees can be deep without nesting (a long chain of "+"): evaluation recursion is bounded.
    struct Depth {
      int& d;
      ~Depth() { --d; }
    } depth{++eval_depth_};
    if (eval_depth_ > kMaxEvalDepth) fail(n, absl::StrCat("an expression deeper than ", kMaxEvalDepth, " levels"));
    try {
      return eval_node(n, scope);
    } catch (const TemplateError& e) {
      // Name the line once: errors from builtins carry none yet.
      if (std::string_view(e.what()).substr(0, 5) == "line ") throw;
      fail(n, e.what());
    }
  }

  Value eval_node(const Node& n, const ScopePtr& scope) {
    switch (n.kind) {
      case NodeKind::kLiteral: return n.literal;
      case NodeKind::kName: return scope->lookup(n.name);
      case NodeKind::kList:
      case NodeKind::kTuple: {
        List items;
        for (const NodePtr& a : n.args) items.push_back(eval(*a, scope));
        return Value::of(std::move(items));
      }
      case NodeKind::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < n.args.size(); i += 2) {
          Value key = eval(*n.args[i], scope);
          if (key.kind != Kind::kString) fail(n, "dict keys must be strings");
          d.set(key.text, eval(*n.args[i + 1], scope));
        }
        return Value::of(std::move(d));
      }
      case NodeKind::kMember: return member(eval(*n.args[0], scope), n.name);
      case NodeKind::kIndex: return subscript(eval(*n.args[0], scope), eval(*n.args[1], scope));
      case NodeKind::kSlice: {
        auto bound = [&](size_t i) { return n.args[i] ? eval(*n.args[i], scope) : Value{}; };
        return slice(eval(*n.args[0], scope), bound(1), bound(2), bound(3));
      }
      case NodeKind::kCall: {
        Value callee = eval(*n.args[0], scope);
        if (callee.kind != Kind::kFunction) {
          const std::string what = n.args[0]->kind == NodeKind::kName || n.args[0]->kind == NodeKind::kMember
                                       ? absl::StrCat("'", n.args[0]->name, "'")
                                       : std::string("this");
          fail(n, absl::StrCat(what, " is a ", kind_name(callee.kind), ", not a function"));
        }
        return (*callee.function)(arguments(n, 1, scope));
      }
      case NodeKind::kFilter: return apply_filter(n.name, eval(*n.args[0], scope), arguments(n, 1, scope));
      case NodeKind::kTest: return Value::of(apply_test(n.name, eval(*n.args[0], scope)) != n.negated);
      case NodeKind::kUnary: {
        Value v = eval(*n.args[0], scope);
        if (n.name == "not") return Value::of(!v.truthy());
        if (!v.is_number()) fail(n, absl::StrCat("unary ", n.name, " needs a number, got ", kind_name(v.kind)));
        if (n.name == "+") return v;
        return v.kind == Kind::kInt ? Value::of(-v.integer) : Value::of(-v.number);
      }
      case NodeKind::kTernary: return eval(*n.args[0], scope).truthy() ? eval(*n.args[1], scope) : eval(*n.args[2], scope);
      case NodeKind::kSelect: return eval(*n.args[1], scope).truthy() ? eval(*n.args[0], scope) : Value{};
      case NodeKind::kBinary: return binary(n, scope);
      default: fail(n, "a statement where a value was expected");
    }
  }

  Value binary(const Node& n, const ScopePtr& scope) {
    const std::string& op = n.name;
    Value left = eval(*n.args[0], scope);
    if (op == "and") return left.truthy() ? eval(*n.args[1], scope) : left;
    if (op == "or") return left.truthy() ? left : eval(*n.args[1], scope);
    Value right = eval(*n.args[1], scope);
    if (op == "==") return Value::of(loosely_equal(left, right));
    if (op == "!=") return Value::of(!loosely_equal(left, right));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (right.is_undefined()) {
        found = false;
      } else if (right.kind == Kind::kList) {
        for (const Value& v : *right.list) found = found || loosely_equal(v, left);
      } else if (right.kind == Kind::kString && left.kind == Kind::kString) {
        found = right.text.find(left.text) != std::string::npos;
      } else if (right.is_mapping() && left.kind == Kind::kString) {
        found = right.dict->find(left.text) != nullptr;
      } else {
        fail(n, absl::StrCat("'", op, "' cannot look for a ", kind_name(left.kind), " in a ", kind_name(right.kind)));
      }
      return Value::of(found == (op == "in"));
    }
    if (left.is_undefined() || right.is_undefined()) fail(n, absl::StrCat("'", op, "' on an undefined value"));
    if (left.is_none() || right.is_none()) fail(n, absl::StrCat("'", op, "' on none"));
    if (op == "~") return bounded(n, Value::of(left.to_output() + right.to_output()));
    if (left.is_number() && right.is_number()) return arithmetic(n, left, right);
    if (op == "+" && left.kind == Kind::kList && right.kind == Kind::kList) {
      if (left.list->size() + right.list->size() > size_t(Template::kMaxSteps)) {
        fail(n, absl::StrCat("a list of more than ", Template::kMaxSteps, " items"));
      }
      List items = *left.list;
      items.insert(items.end(), right.list->begin(), right.list->end());
      return Value::of(std::move(items));
    }
    if (op == "+" && (left.kind == Kind::kString || right.kind == Kind::kString)) {
      return bounded(n, Value::of(left.to_output() + right.to_output()));
    }
    if (left.kind == Kind::kString && right.kind == Kind::kString && (op == "<" || op == ">" || op == "<=" || op == ">=")) {
      const int c = left.text.compare(right.text);
      return Value::of(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    fail(n, absl::StrCat("'", op, "' between a ", kind_name(left.kind), " and a ", kind_name(right.kind)));
  }

  // Strings built by concatenation are held to the output's bound, so doubling one in a loop cannot
  // exhaust memory before anything is written.
  static Value bounded(const Node& n, Value text) {
    if (text.text.size() > Template::kMaxOutputBytes) {
      fail(n, absl::StrCat("a string longer than ", Template::kMaxOutputBytes >> 20, " MiB"));
    }
    return text;
  }

  static Value arithmetic(const Node& n, const Value& left, const Value& right) {
    const std::string& op = n.name;
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat;
    const double a = left.as_double(), b = right.as_double();
    auto number = [&](double d) { return is_float ? Value::of(d) : Value::of(int64_t(d)); };
    if (op == "<") return Value::of(a < b);
    if (op == ">") return Value::of(a > b);
    if (op == "<=") return Value::of(a <= b);
    if (op == ">=") return Value::of(a >= b);
    if (!is_float && (op == "+" || op == "-" || op == "*")) {
      const int64_t x = left.integer, y = right.integer;
      return Value::of(op == "+" ? x + y : op == "-" ? x - y : x * y);
    }
    if (op == "+") return number(a + b);
    if (op == "-") return number(a - b);
    if (op == "*") return number(a * b);
    if ((op == "/" || op == "//" || op == "%") && b == 0) fail(n, "division by zero");
    if (op == "/") return Value::of(a / b);
    if (op == "//") return number(std::floor(a / b));
    if (op == "%") return number(std::fmod(a, b));
    if (op == "**") {
      const double p = std::pow(a, b);
      return is_float || b < 0 ? Value::of(p) : Value::of(int64_t(p));
    }
    fail(n, absl::StrCat("unknown operator '", op, "'"));
  }

  static constexpr int kMaxEvalDepth = 1000;
  int64_t steps_ = 0;
  int macro_depth_ = 0;
  int eval_depth_ = 0;
};

}  // namespace

absl::StatusOr<Template> Template::parse(std::string_view source) {
  try {
    Template t;
    t.program_ = std::make_shared<const std::vector<NodePtr>>(jinja::parse(tokenize(source, LexOptions{})));
    return t;
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

absl::StatusOr<std::string> Template::render(const Value& context) const {
  if (!context.is_mapping()) return absl::InvalidArgumentError("a template renders with a dict of variables");
  auto globals = std::make_shared<Scope>(nullptr);
  auto scope = std::make_shared<Scope>(globals);
  // Declared after the scopes: it empties what the render made before the scopes let go of it, so
  // nothing is left to free deeply or to leak in a cycle.
  const CycleBreaker breaker;
  const Dict functions = global_functions();
  for (const auto& [k, v] : functions.items()) globals->set(k, v);
  for (const auto& [k, v] : context.dict->items()) scope->set(k, v);
  try {
    Renderer renderer;
    return renderer.render(*program_, scope);
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const LoopControl&) {
    return absl::InvalidArgumentError("{% break %} or {% continue %} outside a for loop");
  }
}

}  // namespace freekv::jinja
