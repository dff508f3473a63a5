// A parsed Jinja template and its renderer, for chat templates (the `chat_template` of a model's
// tokenizer_config.json). Implements the language as Hugging Face's chat renderers use it — if/elif/
// else, for (loop.*, else, break, continue, filtered iteration), set (names, tuples, namespace
// attributes, block set), macros, the expression grammar with slices, filters, tests and methods, and
// the globals namespace(), range(), raise_exception() and strftime_now() — and is checked byte for byte
// against @huggingface/jinja (tests/chat). Not supported (a clear error at parse time): {% call %},
// {% filter %}, {% include %}, {% extends %}, {% block %}.
//
// Where the reference renderer departs from Python's Jinja (which Hugging Face's Python library uses),
// freekv follows Python: text an iteration writes before {% break %} / {% continue %} is kept; a for
// loop's else runs only when there is nothing to iterate; string lengths, indexes and slices count
// characters, not UTF-16 units. It follows the reference where Python's Jinja has no single answer for
// chat templates: strip/lstrip/rstrip trim whitespace whatever characters they are given, true prints
// "true", and none prints nothing.
//
// Rendering is bounded, because the conversation it renders is a client's input: at most
// kMaxOutputBytes of output (and of any string built), kMaxSteps loop iterations and macro calls (and
// items in a list built), else an error.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/chat/jinja_ast.h"

namespace freekv::jinja {

class Template {
 public:
  static constexpr size_t kMaxOutputBytes = 64 << 20;
  static constexpr int64_t kMaxSteps = 1'000'000;

  // INVALID_ARGUMENT "<line>: <what>" on a syntax error.
  static absl::StatusOr<Template> parse(std::string_view source);

  // Renders with `context` (a dict: its entries are the template's variables). INVALID_ARGUMENT with
  // the message of raise_exception() or of the failing operation.
  absl::StatusOr<std::string> render(const Value& context) const;

 private:
  std::shared_ptr<const std::vector<NodePtr>> program_;
};

}  // namespace freekv::jinja
