// Parses a token list (jinja_lexer.h) into statements (jinja_ast.h). The grammar and operator precedence
// are those of the reference renderer: if-else, or, and, not, comparisons and in, + - ~, * / // %, **,
// is-tests, filters, unary signs, then calls, attributes, subscripts and slices.
#pragma once

#include <vector>

#include "worker/chat/jinja_ast.h"
#include "worker/chat/jinja_lexer.h"

namespace freekv::jinja {

// Throws TemplateError naming the line on a syntax error or a statement freekv does not implement
// ({% call %}, {% filter %}, {% include %}, ...).
std::vector<NodePtr> parse(const std::vector<Token>& tokens);

}  // namespace freekv::jinja
