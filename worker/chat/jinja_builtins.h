// What a chat template can call by name: filters (value | name(args)), tests (value is name), the
// methods and properties of strings and dicts (value.name), and the global functions. Semantics follow
// the reference renderer (@huggingface/jinja); an unknown name is a TemplateError naming it.
#pragma once

#include <string_view>

#include "worker/chat/jinja_value.h"

namespace freekv::jinja {

Value apply_filter(const std::string& name, const Value& operand, const CallArgs& args);
bool apply_test(const std::string& name, const Value& operand);
// value.name: a dict or namespace entry (then, for dicts, the methods get/items/keys/values), a string
// method or length, a list's length; undefined when there is none.
Value member(const Value& object, std::string_view name);
// object[index]: dict entries by string key, list items and string characters by (negative) integer.
Value subscript(const Value& object, const Value& index);
// object[start:stop:step] with Python's slice rules; absent bounds are undefined.
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);
// namespace, range, raise_exception, strftime_now.
Dict global_functions();

}  // namespace freekv::jinja
