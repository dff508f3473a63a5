#include "worker/chat/jinja_parser.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace freekv::jinja {

Node::~Node() {
  std::vector<NodePtr> pending;
  auto take = [&pending](std::vector<NodePtr>& children) {
    for (NodePtr& c : children) {
      if (c) pending.push_back(std::move(c));
    }
    children.clear();
  };
  take(args);
  take(body);
  take(else_body);
  while (!pending.empty()) {
    NodePtr n = std::move(pending.back());
    pending.pop_back();
    take(n->args);
    take(n->body);
    take(n->else_body);
  }  // each n goes with no children left
}

namespace {

// Brackets, signs, "not" and nested blocks recurse in the parser: bounded, so a hostile template
// cannot overflow the stack.
constexpr int kMaxNesting = 256;

NodePtr make(NodeKind kind, int line) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  n->line = line;
  return n;
}

NodePtr make_binary(std::string op, NodePtr left, NodePtr right) {
  NodePtr n = make(NodeKind::kBinary, left->line);
  n->name = std::move(op);
  n->args.push_back(std::move(left));
  n->args.push_back(std::move(right));
  return n;
}

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  std::vector<NodePtr> program() {
    std::vector<NodePtr> out;
    while (pos_ < tokens_.size()) out.push_back(statement_or_text());
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    const int line = pos_ < tokens_.size() ? tokens_[pos_].line : (tokens_.empty() ? 1 : tokens_.back().line);
    throw TemplateError(absl::StrCat("line ", line, ": ", message));
  }
  const Token* peek(size_t ahead = 0) const {
    return pos_ + ahead < tokens_.size() ? &tokens_[pos_ + ahead] : nullptr;
  }
  bool at(TokenKind kind, std::string_view text = {}, size_t ahead = 0) const {
    const Token* t = peek(ahead);
    return t != nullptr && t->kind == kind && (text.empty() || t->text == text);
  }
  bool at_op(std::string_view op) const { return at(TokenKind::kOperator, op); }
  bool at_word(std::string_view word, size_t ahead = 0) const { return at(TokenKind::kIdentifier, word, ahead); }
  const Token& next(const char* what) {
    if (pos_ >= tokens_.size()) fail(absl::StrCat("the template ends where ", what, " was expected"));
    return tokens_[pos_++];
  }
  void expect(TokenKind kind, std::string_view text, const char* what) {
    if (!at(kind, text)) {
      const Token* t = peek();
      fail(absl::StrCat("expected ", what, t ? absl::StrCat(", found '", t->text, "'") : ", found the end of the template"));
    }
    ++pos_;
  }
  void expect_close() { expect(TokenKind::kCloseStatement, {}, "'%}'"); }
  int line() const { return pos_ < tokens_.size() ? tokens_[pos_].line : 0; }
  // {% name ...: the statement at the cursor is one of `names`.
  bool at_statement(std::initializer_list<std::string_view> names) const {
    if (!at(TokenKind::kOpenStatement)) return false;
    for (std::string_view n : names) {
      if (at_word(n, 1)) return true;
    }
    return false;
  }
  // Statements up to (not including) one of the closing statements; fails at the end of the template.
  std::vector<NodePtr> block_until(std::initializer_list<std::string_view> closers, const char* opener) {
    std::vector<NodePtr> body;
    while (!at_statement(closers)) {
      if (pos_ >= tokens_.size()) fail(absl::StrCat("{% ", opener, " %} is never closed with {% ", std::string(*closers.begin()), " %}"));
      body.push_back(statement_or_text());
    }
    return body;
  }
  void end_statement(const char* word) {
    expect(TokenKind::kOpenStatement, {}, "'{%'");
    expect(TokenKind::kIdentifier, word, word);
    expect_close();
  }

  NodePtr statement_or_text() {
    const Token& t = tokens_[pos_];
    switch (t.kind) {
      case TokenKind::kText: {
        NodePtr n = make(NodeKind::kText, t.line);
        n->name = t.text;
        ++pos_;
        return n;
      }
      case TokenKind::kOpenExpression: {
        ++pos_;
        NodePtr n = make(NodeKind::kOutput, t.line);
        n->args.push_back(expression());
        expect(TokenKind::kCloseExpression, {}, "'}}'");
        return n;
      }
      case TokenKind::kOpenStatement: ++pos_; return statement();
      default: fail(absl::StrCat("unexpected '", t.text, "' outside a tag"));
    }
  }

  NodePtr statement() {
    Nest nest(this);
    const Token& word = next("a statement name");
    if (word.kind != TokenKind::kIdentifier) fail(absl::StrCat("expected a statement name after '{%', found '", word.text, "'"));
    const std::string& w = word.text;
    if (w == "if") {
      NodePtr n = if_chain(word.line);
      end_statement("endif");
      return n;
    }
    if (w == "for") return for_loop(word.line);
    if (w == "set") return set(word.line);
    if (w == "macro") return macro(word.line);
    if (w == "break" || w == "continue") {
      expect_close();
      return make(w == "break" ? NodeKind::kBreak : NodeKind::kContinue, word.line);
    }
    fail(absl::StrCat("the statement {% ", w, " %} is not supported by freekv's chat-template renderer (supported: if, for, "
                      "set, macro, break, continue)"));
  }

  // After "if" or "elif": test %} body, then elif / else / (endif left for the caller).
  NodePtr if_chain(int at_line) {
    Nest nest(this);
    NodePtr n = make(NodeKind::kIf, at_line);
    n->args.push_back(expression());
    expect_close();
    n->body = block_until({"elif", "else", "endif"}, "if");
    if (at_statement({"elif"})) {
      pos_ += 2;
      n->else_body.push_back(if_chain(line()));
    } else if (at_statement({"else"})) {
      pos_ += 2;
      expect_close();
      n->else_body = block_until({"endif"}, "if");
    }
    return n;
  }

  NodePtr for_loop(int at_line) {
    NodePtr n = make(NodeKind::kFor, at_line);
    n->args.push_back(target(/*allow_member=*/false));
    expect(TokenKind::kIdentifier, "in", "'in' after the loop variable");
    n->args.push_back(expression());
    expect_close();
    n->body = block_until({"endfor", "else"}, "for");
    if (at_statement({"else"})) {
      pos_ += 2;
      expect_close();
      n->else_body = block_until({"endfor"}, "for");
    }
    end_statement("endfor");
    return n;
  }

  // A name, a tuple of names, or (for set) namespace.attribute.
  NodePtr target(bool allow_member) {
    NodePtr first = target_item(allow_member);
    if (!at_op(",")) return first;
    NodePtr tuple = make(NodeKind::kTuple, first->line);
    tuple->args.push_back(std::move(first));
    while (at_op(",")) {
      ++pos_;
      tuple->args.push_back(target_item(false));
    }
    return tuple;
  }
  NodePtr target_item(bool allow_member) {
    const Token& t = next("a variable name");
    if (t.kind != TokenKind::kIdentifier) fail(absl::StrCat("expected a variable name, found '", t.text, "'"));
    NodePtr n = make(NodeKind::kName, t.line);
    n->name = t.text;
    if (allow_member && at_op(".")) {
      ++pos_;
      const Token& attr = next("an attribute name");
      if (attr.kind != TokenKind::kIdentifier) fail("expected an attribute name after '.'");
      NodePtr m = make(NodeKind::kMember, t.line);
      m->name = attr.text;
      m->args.push_back(std::move(n));
      return m;
    }
    return n;
  }

  NodePtr set(int at_line) {
    NodePtr n = make(NodeKind::kSet, at_line);
    n->args.push_back(target(/*allow_member=*/true));
    if (at_op("=")) {
      ++pos_;
      n->args.push_back(expression_sequence());
      expect_close();
    } else {
      expect_close();
      n->args.push_back(nullptr);
      n->body = block_until({"endset"}, "set");
      end_statement("endset");
    }
    return n;
  }

  NodePtr macro(int at_line) {
    NodePtr n = make(NodeKind::kMacro, at_line);
    const Token& name = next("a macro name");
    if (name.kind != TokenKind::kIdentifier) fail("expected a macro name after {% macro");
    n->name = name.text;
    expect(TokenKind::kOperator, "(", "'(' after the macro name");
    while (!at_op(")")) {
      const Token& param = next("a parameter name");
      if (param.kind != TokenKind::kIdentifier) fail(absl::StrCat("expected a parameter name, found '", param.text, "'"));
      n->keywords.push_back(param.text);
      if (at_op("=")) {
        ++pos_;
        n->args.push_back(expression());
      } else {
        n->args.push_back(nullptr);
      }
      if (at_op(",")) ++pos_;
    }
    ++pos_;
    expect_close();
    n->body = block_until({"endmacro"}, "macro");
    end_statement("endmacro");
    return n;
  }

  // An expression, or several separated by commas (a tuple), as after "set x =".
  NodePtr expression_sequence() {
    NodePtr first = expression();
    if (!at_op(",")) return first;
    NodePtr tuple = make(NodeKind::kTuple, first->line);
    tuple->args.push_back(std::move(first));
    while (at_op(",")) {
      ++pos_;
      tuple->args.push_back(expression());
    }
    return tuple;
  }

  NodePtr expression() {
    Nest nest(this);
    NodePtr value = logical_or();
    if (!at_word("if")) return value;
    ++pos_;
    NodePtr test = logical_or();
    if (at_word("else")) {
      ++pos_;
      NodePtr n = make(NodeKind::kTernary, value->line);
      n->args.push_back(std::move(test));
      n->args.push_back(std::move(value));
      n->args.push_back(expression());
      return n;
    }
    NodePtr n = make(NodeKind::kSelect, value->line);
    n->args.push_back(std::move(value));
    n->args.push_back(std::move(test));
    return n;
  }
  // One left-associative level of binary operators: operands parsed by `operand`, joined by any of `ops`
  // (the words "or" and "and", or operator symbols).
  NodePtr binary_level(std::initializer_list<std::string_view> ops, NodePtr (Parser::*operand)()) {
    NodePtr left = (this->*operand)();
    for (const Token* t = peek(); t != nullptr && (t->kind == TokenKind::kOperator || t->kind == TokenKind::kIdentifier) &&
                                  std::find(ops.begin(), ops.end(), t->text) != ops.end();
         t = peek()) {
      std::string op = t->text;
      ++pos_;
      left = make_binary(op, std::move(left), (this->*operand)());
    }
    return left;
  }
  NodePtr logical_or() { return binary_level({"or"}, &Parser::logical_and); }
  NodePtr logical_and() { return binary_level({"and"}, &Parser::logical_not); }
  NodePtr logical_not() {
    Nest nest(this);
    if (!at_word("not")) return comparison();
    const int l = line();
    ++pos_;
    NodePtr n = make(NodeKind::kUnary, l);
    n->name = "not";
    n->args.push_back(logical_not());
    return n;
  }
  NodePtr comparison() {
    NodePtr left = additive();
    while (true) {
      std::string op;
      if (at_word("not") && at_word("in", 1)) {
        op = "not in";
        pos_ += 2;
      } else if (at_word("in")) {
        op = "in";
        ++pos_;
      } else if (at_op("==") || at_op("!=") || at_op("<") || at_op("<=") || at_op(">") || at_op(">=")) {
        op = tokens_[pos_++].text;
      } else {
        return left;
      }
      left = make_binary(op, std::move(left), additive());
    }
  }
  NodePtr additive() { return binary_level({"+", "-", "~"}, &Parser::multiplicative); }
  NodePtr multiplicative() { return binary_level({"*", "/", "//", "%"}, &Parser::power); }
  NodePtr power() { return binary_level({"**"}, &Parser::test); }
  NodePtr test() {
    NodePtr operand = filter();
    while (at_word("is")) {
      ++pos_;
      NodePtr n = make(NodeKind::kTest, operand->line);
      if (at_word("not")) {
        n->negated = true;
        ++pos_;
      }
      const Token& name = next("a test name");
      // none, true and false are names of tests here, not literals.
      if (name.kind != TokenKind::kIdentifier) fail(absl::StrCat("expected a test name after 'is', found '", name.text, "'"));
      n->name = name.text;
      n->args.push_back(std::move(operand));
      operand = std::move(n);
    }
    return operand;
  }
  NodePtr filter() {
    NodePtr operand = unary_sign();
    while (at_op("|")) {
      ++pos_;
      const Token& name = next("a filter name");
      if (name.kind != TokenKind::kIdentifier) fail(absl::StrCat("expected a filter name after '|', found '", name.text, "'"));
      NodePtr n = make(NodeKind::kFilter, name.line);
      n->name = name.text;
      n->args.push_back(std::move(operand));
      n->keywords.emplace_back();
      if (at_op("(")) call_arguments(n.get());
      operand = std::move(n);
    }
    return operand;
  }
  NodePtr unary_sign() {
    Nest nest(this);
    if (at(TokenKind::kSign)) {
      NodePtr n = make(NodeKind::kUnary, line());
      n->name = tokens_[pos_++].text;
      n->args.push_back(unary_sign());
      return n;
    }
    return postfix(primary());
  }
  // Calls, attributes, subscripts and slices after a primary expression.
  NodePtr postfix(NodePtr object) {
    while (true) {
      if (at_op("(")) {
        NodePtr n = make(NodeKind::kCall, object->line);
        n->args.push_back(std::move(object));
        n->keywords.emplace_back();
        call_arguments(n.get());
        object = std::move(n);
      } else if (at_op(".")) {
        ++pos_;
        const Token& attr = next("an attribute name");
        if (attr.kind == TokenKind::kIdentifier) {
          NodePtr n = make(NodeKind::kMember, object->line);
          n->name = attr.text;
          n->args.push_back(std::move(object));
          object = std::move(n);
        } else if (attr.kind == TokenKind::kInteger) {  // x.0 is x[0]
          NodePtr n = make(NodeKind::kIndex, object->line);
          n->args.push_back(std::move(object));
          n->args.push_back(literal(Value::of(int64_t(std::strtoll(attr.text.c_str(), nullptr, 10))), attr.line));
          object = std::move(n);
        } else {
          fail(absl::StrCat("expected an attribute name after '.', found '", attr.text, "'"));
        }
      } else if (at_op("[")) {
        ++pos_;
        object = subscript(std::move(object));
      } else {
        return object;
      }
    }
  }
  // After '[': an index or a slice, up to and including ']'.
  NodePtr subscript(NodePtr object) {
    std::vector<NodePtr> parts;
    bool is_slice = false;
    NodePtr current;
    while (!at_op("]")) {
      if (pos_ >= tokens_.size()) fail("a subscript '[' is never closed with ']'");
      if (at_op(":")) {
        ++pos_;
        is_slice = true;
        parts.push_back(std::move(current));
        current = nullptr;
      } else {
        if (current) fail("expected ':' or ']' in a subscript");
        current = expression();
      }
    }
    ++pos_;
    parts.push_back(std::move(current));
    if (!is_slice) {
      if (!parts[0]) fail("an empty subscript []");
      NodePtr n = make(NodeKind::kIndex, object->line);
      n->args.push_back(std::move(object));
      n->args.push_back(std::move(parts[0]));
      return n;
    }
    if (parts.size() > 3) fail("a slice takes at most start:stop:step");
    NodePtr n = make(NodeKind::kSlice, object->line);
    n->args.push_back(std::move(object));
    for (auto& p : parts) n->args.push_back(std::move(p));
    while (n->args.size() < 4) n->args.push_back(nullptr);
    return n;
  }
  // '(' arguments ')' appended to n->args, with keyword names in n->keywords.
  void call_arguments(Node* n) {
    expect(TokenKind::kOperator, "(", "'('");
    bool saw_keyword = false;
    while (!at_op(")")) {
      if (pos_ >= tokens_.size()) fail("an argument list '(' is never closed with ')'");
      if (at(TokenKind::kIdentifier) && at(TokenKind::kOperator, "=", 1)) {
        n->keywords.push_back(tokens_[pos_].text);
        pos_ += 2;
        saw_keyword = true;
      } else {
        if (saw_keyword) fail("a positional argument follows a keyword argument");
        n->keywords.emplace_back();
      }
      n->args.push_back(expression());
      if (at_op(",")) {
        ++pos_;
      } else if (!at_op(")")) {
        fail("expected ',' or ')' in an argument list");
      }
    }
    ++pos_;
  }

  static NodePtr literal(Value v, int at_line) {
    NodePtr n = make(NodeKind::kLiteral, at_line);
    n->literal = std::move(v);
    return n;
  }

  NodePtr primary() {
    const Token& t = next("a value");
    switch (t.kind) {
      case TokenKind::kInteger: return literal(Value::of(int64_t(std::strtoll(t.text.c_str(), nullptr, 10))), t.line);
      case TokenKind::kFloat: return literal(Value::of(std::strtod(t.text.c_str(), nullptr)), t.line);
      case TokenKind::kString: {
        std::string s = t.text;
        while (at(TokenKind::kString)) s += tokens_[pos_++].text;  // adjacent literals concatenate
        return literal(Value::of(std::move(s)), t.line);
      }
      case TokenKind::kIdentifier: {
        if (t.text == "true" || t.text == "True") return literal(Value::of(true), t.line);
        if (t.text == "false" || t.text == "False") return literal(Value::of(false), t.line);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), t.line);
        NodePtr n = make(NodeKind::kName, t.line);
        n->name = t.text;
        return n;
      }
      case TokenKind::kOperator:
        if (t.text == "(") {
          NodePtr inner = expression_sequence();
          expect(TokenKind::kOperator, ")", "')'");
          return inner;
        }
        if (t.text == "[" || t.text == "{") {
          const bool is_list = t.text == "[";
          NodePtr n = make(is_list ? NodeKind::kList : NodeKind::kDict, t.line);
          const char* close = is_list ? "]" : "}";
          while (!at_op(close)) {
            if (pos_ >= tokens_.size()) fail(absl::StrCat("'", t.text, "' is never closed with '", close, "'"));
            n->args.push_back(expression());
            if (!is_list) {
              expect(TokenKind::kOperator, ":", "':' between a key and its value");
              n->args.push_back(expression());
            }
            if (at_op(",")) {
              ++pos_;
            } else if (!at_op(close)) {
              fail(absl::StrCat("expected ',' or '", close, "'"));
            }
          }
          ++pos_;
          return n;
        }
        break;
      default: break;
    }
    --pos_;
    fail(absl::StrCat("unexpected '", t.text, "' where a value was expected"));
  }

  // Counts one level of recursion for as long as it lives.
  class Nest {
   public:
    explicit Nest(Parser* p) : p_(p) {
      if (++p_->nesting_ > kMaxNesting) p_->fail(absl::StrCat("nested deeper than ", kMaxNesting, " levels"));
    }
    ~Nest() { --p_->nesting_; }

   private:
    Parser* p_;
  };

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace

std::vector<NodePtr> parse(const std::vector<Token>& tokens) { return Parser(tokens).program(); }

}  // namespace freekv::jinja
