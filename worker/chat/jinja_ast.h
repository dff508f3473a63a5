// The parsed form of a chat template: one Node type for statements and expressions. Which fields a
// node uses depends on its kind (listed beside each kind); unused fields stay empty.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/chat/jinja_value.h"

namespace freekv::jinja {

enum class NodeKind {
  // Statements
  kText,      // name: the literal text
  kOutput,    // {{ args[0] }}
  kIf,        // args[0]: test; body; else_body (an elif is an kIf alone in else_body)
  kFor,       // args[0]: kName or kTuple target; args[1]: iterable (kSelect filters); body; else_body (no items)
  kSet,       // args[0]: kName, kMember (namespace attribute) or kTuple target; args[1]: value, or null with body
  kMacro,     // name; params: args[i] default (null when none) with keywords[i] its name; body
  kBreak,
  kContinue,
  // Expressions
  kLiteral,   // literal
  kName,      // name
  kList,      // args: items
  kTuple,     // args: items
  kDict,      // args: key, value, key, value, ...
  kMember,    // args[0].name
  kIndex,     // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]], each bound null when absent
  kCall,      // args[0](args[1...]); keywords[i] names args[i] when it is a keyword argument (else empty)
  kFilter,    // args[0] | name(args[1...]); keywords as for kCall
  kTest,      // args[0] is [not] name; negated
  kUnary,     // name ("not", "-", "+") args[0]
  kBinary,    // args[0] name args[1]
  kTernary,   // args[1] if args[0] else args[2]
  kSelect,    // args[0] if args[1] (no else): in a for loop, keeps the items where args[1] holds
};

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Releases the subtree without recursion: a long operator chain is a deep tree.
  ~Node();

  NodeKind kind;
  int line = 0;  // in the template, for errors
  std::string name;
  Value literal;
  bool negated = false;
  std::vector<NodePtr> args;
  std::vector<std::string> keywords;
  std::vector<NodePtr> body;
  std::vector<NodePtr> else_body;
};

}  // namespace freekv::jinja
