// Splits a Jinja template into tokens: text between tags, the tag delimiters, and inside tags the
// identifiers, literals and operators. Whitespace control is applied here, as Hugging Face's chat
// renderers do: trim_blocks and lstrip_blocks (on for chat templates), "-" on a delimiter to strip
// the whitespace beside it, and {% generation %} markers removed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace freekv::jinja {

enum class TokenKind {
  kText,             // literal template text
  kOpenStatement,    // {%
  kCloseStatement,   // %}
  kOpenExpression,   // {{
  kCloseExpression,  // }}
  kIdentifier,       // names and keywords (and, or, not, in, is, if, ...)
  kInteger,
  kFloat,
  kString,           // escapes already resolved
  kOperator,         // + - * / // % ** ~ == != < <= > >= = | . , : ( ) [ ] { }
  kSign,             // a unary + or - (where a value is expected)
};

struct Token {
  TokenKind kind;
  std::string text;
  int line = 1;  // of the token's start in the template, for errors
};

struct LexOptions {
  bool trim_blocks = true;    // drop the newline after a block tag
  bool lstrip_blocks = true;  // drop spaces and tabs before a block tag at the start of a line
};

// Throws TemplateError naming the line on a malformed template.
std::vector<Token> tokenize(std::string_view source, const LexOptions& options);

// Unicode whitespace as JavaScript's String#trim and \s see it (the reference renderer's definition).
// The length of the whitespace character at s[pos], or 0.
size_t whitespace_length(std::string_view s, size_t pos);
std::string_view trim_start(std::string_view s);
std::string_view trim_end(std::string_view s);

}  // namespace freekv::jinja
