#include "worker/chat/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include <utf8proc.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/chat/jinja_lexer.h"
#include "worker/tokenizer/utf8.h"

namespace freekv::jinja {

using tok::append_utf8;
using tok::Utf8Step;
using tok::utf8_step;
namespace {

[[noreturn]] void fail(const std::string& message) { throw TemplateError(message); }

// UTF-8 text as code points and back: indexing, slicing and length count characters, not bytes.
std::vector<std::string> characters(std::string_view s) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = std::max<size_t>(1, utf8_step(s, pos).length);
    out.emplace_back(s.substr(pos, n));
    pos += n;
  }
  return out;
}

// Unicode simple case mapping per character (JavaScript's toUpperCase / toLowerCase, less their few
// context-dependent and one-to-many special cases, such as a final sigma or "ß" → "SS").
std::string change_case(std::string_view s, bool upper) {
  std::string out;
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = utf8_step(s, pos);
    if (step.kind != Utf8Step::kValid) {
      out.append(s.substr(pos, std::max<size_t>(1, step.length)));
      pos += std::max<size_t>(1, step.length);
      continue;
    }
    const utf8proc_int32_t cp = utf8proc_int32_t(step.code_point);
    append_utf8(char32_t(upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp)), &out);
    pos += step.length;
  }
  return out;
}

bool is_word(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

const Value& positional(const CallArgs& args, size_t i, const char* name, const char* what) {
  if (i >= args.positional.size()) fail(absl::StrCat(name, "() needs ", what));
  return args.positional[i];
}

const std::string& string_arg(const Value& v, const char* name) {
  if (v.kind != Kind::kString) fail(absl::StrCat(name, "() takes a string, got ", kind_name(v.kind)));
  return v.text;
}

// startswith / endswith: a string or a list of strings.
bool affix_match(const std::string& text, const Value& pattern, bool prefix, const char* name) {
  auto match = [&](const std::string& p) {
    return p.size() <= text.size() &&
           (prefix ? text.compare(0, p.size(), p) == 0 : text.compare(text.size() - p.size(), p.size(), p) == 0);
  };
  if (pattern.kind == Kind::kString) return match(pattern.text);
  if (pattern.kind == Kind::kList) {
    for (const Value& item : *pattern.list) {
      if (match(string_arg(item, name))) return true;
    }
    return false;
  }
  fail(absl::StrCat(name, "() takes a string or a list of strings, got ", kind_name(pattern.kind)));
}

Value split(const std::string& text, const CallArgs& args) {
  const Value sep = args.positional.empty() ? Value::none() : args.positional[0];
  const int64_t max_split = args.positional.size() > 1 ? args.positional[1].integer : -1;
  List parts;
  if (sep.is_none()) {  // runs of whitespace separate; none at the ends
    std::string_view rest = trim_start(text);
    while (!rest.empty()) {
      if (max_split >= 0 && int64_t(parts.size()) >= max_split) {
        parts.push_back(Value::of(std::string(rest)));
        break;
      }
      size_t end = 0;
      while (end < rest.size() && whitespace_length(rest, end) == 0) ++end;
      parts.push_back(Value::of(std::string(rest.substr(0, end))));
      rest = trim_start(rest.substr(end));
    }
    return Value::of(std::move(parts));
  }
  const std::string& s = string_arg(sep, "split");
  if (s.empty()) fail("split(): empty separator");
  size_t start = 0;
  while (true) {
    const size_t at = text.find(s, start);
    if (at == std::string::npos || (max_split >= 0 && int64_t(parts.size()) >= max_split)) break;
    parts.push_back(Value::of(text.substr(start, at - start)));
    start = at + s.size();
  }
  parts.push_back(Value::of(text.substr(start)));
  return Value::of(std::move(parts));
}

std::string replace(const std::string& text, const std::string& from, const std::string& to, int64_t count) {
  if (count == 0) return text;
  std::string out;
  int64_t done = 0;
  if (from.empty()) {  // inserted before every character and at the end
    for (const std::string& c : characters(text)) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += c;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  for (size_t at = text.find(from); at != std::string::npos && (count < 0 || done < count); at = text.find(from, start)) {
    out.append(text, start, at - start);
    out += to;
    start = at + from.size();
    ++done;
  }
  out.append(text, start, std::string::npos);
  return out;
}

Value string_method(const std::string& text, std::string_view name) {
  const std::string self = text;
  auto method = [](Function fn) { return Value::callable(std::move(fn)); };
  if (name == "upper") return method([self](const CallArgs&) { return Value::of(change_case(self, true)); });
  if (name == "lower") return method([self](const CallArgs&) { return Value::of(change_case(self, false)); });
  // The reference renderer trims whitespace whatever characters are passed: strip('\n') trims spaces too.
  if (name == "strip") return method([self](const CallArgs&) { return Value::of(std::string(trim_end(trim_start(self)))); });
  if (name == "lstrip") return method([self](const CallArgs&) { return Value::of(std::string(trim_start(self))); });
  if (name == "rstrip") return method([self](const CallArgs&) { return Value::of(std::string(trim_end(self))); });
  if (name == "title") return method([self](const CallArgs&) { return apply_filter("title", Value::of(self), {}); });
  if (name == "capitalize") return method([self](const CallArgs&) { return apply_filter("capitalize", Value::of(self), {}); });
  if (name == "startswith" || name == "endswith") {
    const bool prefix = name == "startswith";
    return method([self, prefix](const CallArgs& a) {
      const char* n = prefix ? "startswith" : "endswith";
      return Value::of(affix_match(self, positional(a, 0, n, "an argument"), prefix, n));
    });
  }
  if (name == "split") return method([self](const CallArgs& a) { return split(self, a); });
  if (name == "replace") {
    return method([self](const CallArgs& a) {
      const std::string& from = string_arg(positional(a, 0, "replace", "two arguments"), "replace");
      const std::string& to = string_arg(positional(a, 1, "replace", "two arguments"), "replace");
      const Value* count = a.positional.size() > 2 ? &a.positional[2] : a.keyword_arg("count");
      return Value::of(replace(self, from, to, count != nullptr && count->kind == Kind::kInt ? count->integer : -1));
    });
  }
  if (name == "length") return Value::of(int64_t(characters(text).size()));
  return Value{};
}

Value dict_method(const Value& object, std::string_view name) {
  const std::shared_ptr<Dict> dict = object.dict;
  if (name == "get") {
    return Value::callable([dict](const CallArgs& a) {
      const Value* found = dict->find(string_arg(positional(a, 0, "get", "a key"), "get"));
      if (found != nullptr) return *found;
      return a.positional.size() > 1 ? a.positional[1] : Value::none();
    });
  }
  if (name == "items" || name == "keys" || name == "values") {
    const int which = name == "items" ? 0 : name == "keys" ? 1 : 2;
    return Value::callable([dict, which](const CallArgs&) {
      List out;
      for (const auto& [k, v] : dict->items()) {
        if (which == 0) out.push_back(Value::of(List{Value::of(k), v}));
        if (which == 1) out.push_back(Value::of(k));
        if (which == 2) out.push_back(v);
      }
      return Value::of(std::move(out));
    });
  }
  return Value{};
}

const Value& list_operand(const Value& operand, const std::string& filter) {
  if (operand.kind != Kind::kList) fail(absl::StrCat("the filter '", filter, "' takes a list, got ", kind_name(operand.kind)));
  return operand;
}

// selectattr / rejectattr: items of a list of dicts whose attribute passes a test (truthiness without one).
Value select_attribute(const Value& operand, const CallArgs& args, bool select, const std::string& filter) {
  const std::string& attr = string_arg(positional(args, 0, "selectattr", "an attribute name"), "selectattr");
  List out;
  for (const Value& item : *list_operand(operand, filter).list) {
    if (!item.is_mapping()) fail(absl::StrCat("'", filter, "' takes a list of dicts"));
    const Value* a = item.dict->find(attr);
    bool result = false;
    if (a != nullptr && a->truthy()) {
      if (args.positional.size() < 2) {
        result = true;
      } else {
        const std::string& test = string_arg(args.positional[1], "selectattr");
        if ((test == "equalto" || test == "eq" || test == "==") && args.positional.size() > 2) {
          result = loosely_equal(*a, args.positional[2]);
        } else {
          result = apply_test(test, *a);
        }
      }
    }
    if (result == select) out.push_back(item);
  }
  return Value::of(std::move(out));
}

}  // namespace

Value member(const Value& object, std::string_view name) {
  if (object.is_mapping()) {
    if (const Value* found = object.dict->find(name)) return *found;
    return object.kind == Kind::kDict ? dict_method(object, name) : Value{};
  }
  if (object.kind == Kind::kString) return string_method(object.text, name);
  if (object.kind == Kind::kList && name == "length") return Value::of(int64_t(object.list->size()));
  return Value{};
}

Value subscript(const Value& object, const Value& index) {
  if (object.is_mapping()) {
    if (index.kind != Kind::kString) fail(absl::StrCat("a dict is indexed by strings, not by ", kind_name(index.kind)));
    return member(object, index.text);
  }
  if (object.kind == Kind::kList || object.kind == Kind::kString) {
    if (index.kind == Kind::kString) return member(object, index.text);
    if (index.kind != Kind::kInt) fail(absl::StrCat("a ", kind_name(object.kind), " is indexed by integers, not by ", kind_name(index.kind)));
    if (object.kind == Kind::kList) {
      const int64_t n = int64_t(object.list->size()), i = index.integer < 0 ? index.integer + n : index.integer;
      return i >= 0 && i < n ? (*object.list)[size_t(i)] : Value{};
    }
    const std::vector<std::string> chars = characters(object.text);
    const int64_t n = int64_t(chars.size()), i = index.integer < 0 ? index.integer + n : index.integer;
    return i >= 0 && i < n ? Value::of(chars[size_t(i)]) : Value{};
  }
  return Value{};
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step) {
  if (object.kind != Kind::kList && object.kind != Kind::kString) fail(absl::StrCat("cannot slice a ", kind_name(object.kind)));
  for (const Value* bound : {&start, &stop, &step}) {
    if (!bound->is_undefined() && !bound->is_none() && bound->kind != Kind::kInt) fail("slice bounds must be integers");
  }
  const bool is_list = object.kind == Kind::kList;
  const std::vector<std::string> chars = is_list ? std::vector<std::string>{} : characters(object.text);
  const int64_t n = is_list ? int64_t(object.list->size()) : int64_t(chars.size());
  const int64_t s = step.kind == Kind::kInt ? step.integer : 1;
  if (s == 0) fail("slice step cannot be zero");
  auto clamp_bound = [&](const Value& v, int64_t fallback) {
    if (v.kind != Kind::kInt) return fallback;
    int64_t i = v.integer < 0 ? v.integer + n : v.integer;
    return s > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t from = clamp_bound(start, s > 0 ? 0 : n - 1), to = clamp_bound(stop, s > 0 ? n : -1);
  List items;
  std::string text;
  for (int64_t i = from; s > 0 ? i < to : i > to; i += s) {
    if (is_list) {
      items.push_back((*object.list)[size_t(i)]);
    } else {
      text += chars[size_t(i)];
    }
  }
  return is_list ? Value::of(std::move(items)) : Value::of(std::move(text));
}

bool apply_test(const std::string& name, const Value& v) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind == Kind::kBool;
  if (name == "true") return v.kind == Kind::kBool && v.boolean;
  if (name == "false") return v.kind == Kind::kBool && !v.boolean;
  if (name == "string") return v.kind == Kind::kString;
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind == Kind::kInt;
  if (name == "float") return v.kind == Kind::kFloat;
  if (name == "mapping") return v.kind == Kind::kDict;
  if (name == "iterable") return v.kind == Kind::kList || v.kind == Kind::kString;
  if (name == "sequence") return v.kind == Kind::kList || v.kind == Kind::kDict || v.kind == Kind::kString;
  if (name == "callable") return v.kind == Kind::kFunction;
  if (name == "lower") return v.kind == Kind::kString && v.text == change_case(v.text, false);
  if (name == "upper") return v.kind == Kind::kString && v.text == change_case(v.text, true);
  if (name == "odd" || name == "even") {
    if (v.kind != Kind::kInt) fail(absl::StrCat("the test '", name, "' takes an integer, got ", kind_name(v.kind)));
    return (v.integer % 2 != 0) == (name == "odd");
  }
  fail(absl::StrCat("unknown test '", name, "'"));
}

Value apply_filter(const std::string& name, const Value& operand, const CallArgs& args) {
  if (name == "safe") return operand;
  if (name == "tojson") {
    const Value* indent = args.keyword_arg("indent");
    if (indent == nullptr && !args.positional.empty()) indent = &args.positional[0];
    return Value::of(to_json_text(operand, indent != nullptr && indent->kind == Kind::kInt ? int(indent->integer) : 0));
  }
  if (name == "default" || name == "d") {
    const bool boolean = args.positional.size() > 1 && args.positional[1].truthy();
    const bool use_default = operand.is_undefined() || (boolean && !operand.truthy());
    return use_default ? (args.positional.empty() ? Value::of(std::string()) : args.positional[0]) : operand;
  }
  if (name == "length" || name == "count") {
    if (operand.kind == Kind::kString) return Value::of(int64_t(characters(operand.text).size()));
    if (operand.kind == Kind::kList) return Value::of(int64_t(operand.list->size()));
    if (operand.is_mapping()) return Value::of(int64_t(operand.dict->size()));
    fail(absl::StrCat("the filter 'length' takes a string, list or dict, got ", kind_name(operand.kind)));
  }
  if (name == "string") return Value::of(operand.kind == Kind::kString ? operand.text : operand.to_output());
  if (operand.kind == Kind::kString) {
    const std::string& s = operand.text;
    if (name == "trim") return Value::of(std::string(trim_end(trim_start(s))));
    if (name == "upper" || name == "lower") return Value::of(change_case(s, name == "upper"));
    if (name == "capitalize") {
      // The first character upper-cased, the rest left as they are (as the reference renderer does).
      const size_t first = s.empty() ? 0 : std::max<size_t>(1, utf8_step(s, 0).length);
      return Value::of(change_case(s.substr(0, first), true) + s.substr(first));
    }
    if (name == "title") {
      std::string out = s;
      for (size_t i = 0; i < out.size(); ++i) {
        if (is_word(out[i]) && (i == 0 || !is_word(out[i - 1]))) out[i] = change_case(out.substr(i, 1), true)[0];
      }
      return Value::of(std::move(out));
    }
    if (name == "replace") return member(operand, "replace").function->operator()(args);
    if (name == "list") {
      List out;
      for (std::string& c : characters(s)) out.push_back(Value::of(std::move(c)));
      return Value::of(std::move(out));
    }
    if (name == "int") return Value::of(int64_t(std::strtoll(s.c_str(), nullptr, 10)));
    if (name == "float") return Value::of(std::strtod(s.c_str(), nullptr));
  }
  if (operand.is_number() || operand.kind == Kind::kBool) {
    const double d = operand.kind == Kind::kBool ? double(operand.boolean) : operand.as_double();
    if (name == "int") return Value::of(int64_t(d));
    if (name == "float") return Value::of(d);
    if (name == "abs") return operand.kind == Kind::kInt ? Value::of(int64_t(std::llabs(operand.integer))) : Value::of(std::fabs(d));
  }
  if (operand.kind == Kind::kDict && name == "items") return dict_method(operand, "items").function->operator()({});
  if (operand.kind == Kind::kList) {
    const List& items = *operand.list;
    if (name == "list") return operand;
    if (name == "first") return items.empty() ? Value{} : items.front();
    if (name == "last") return items.empty() ? Value{} : items.back();
    if (name == "reverse") return Value::of(List(items.rbegin(), items.rend()));
    if (name == "join") {
      const std::string sep = args.positional.empty() ? "" : string_arg(args.positional[0], "join");
      std::vector<std::string> parts;
      for (const Value& v : items) parts.push_back(v.to_output());
      return Value::of(absl::StrJoin(parts, sep));
    }
    if (name == "unique") {
      List out;
      for (const Value& v : items) {
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return loosely_equal(o, v); })) out.push_back(v);
      }
      return Value::of(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr") return select_attribute(operand, args, name == "selectattr", name);
    if (name == "map") {
      const Value* attr = args.keyword_arg("attribute");
      if (attr == nullptr || attr->kind != Kind::kString) fail("the filter 'map' needs attribute=\"name\"");
      const Value* fallback = args.keyword_arg("default");
      List out;
      for (const Value& item : items) {
        Value v = member(item, attr->text);
        out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : v);
      }
      return Value::of(std::move(out));
    }
  }
  fail(absl::StrCat("the filter '", name, "' is unknown or does not take a ", kind_name(operand.kind)));
}

Dict global_functions() {
  Dict g;
  g.set("namespace", Value::callable([](const CallArgs& a) {
          Dict entries;
          if (!a.positional.empty()) {
            if (!a.positional[0].is_mapping()) fail("namespace() takes a dict or keyword arguments");
            for (const auto& [k, v] : a.positional[0].dict->items()) entries.set(k, v);
          }
          for (const auto& [k, v] : a.keyword) entries.set(k, v);
          return Value::namespace_of(std::move(entries));
        }));
  g.set("range", Value::callable([](const CallArgs& a) {
          for (const Value& v : a.positional) {
            if (v.kind != Kind::kInt) fail("range() takes integers");
          }
          if (a.positional.empty() || a.positional.size() > 3) fail("range() takes 1 to 3 integers");
          const int64_t start = a.positional.size() > 1 ? a.positional[0].integer : 0;
          const int64_t stop = a.positional.size() > 1 ? a.positional[1].integer : a.positional[0].integer;
          const int64_t step = a.positional.size() > 2 ? a.positional[2].integer : 1;
          if (step == 0) fail("range() step cannot be zero");
          List out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.size() >= 1'000'000) fail("range() of more than a million items");
            out.push_back(Value::of(i));
          }
          return Value::of(std::move(out));
        }));
  g.set("raise_exception", Value::callable([](const CallArgs& a) -> Value {
          fail(a.positional.empty() ? std::string("the template raised an exception") : a.positional[0].to_output());
        }));
  g.set("strftime_now", Value::callable([](const CallArgs& a) {
          const std::string& format = string_arg(positional(a, 0, "strftime_now", "a format"), "strftime_now");
          const std::time_t now = std::time(nullptr);
          std::tm local{};
          localtime_r(&now, &local);
          char buf[256];
          const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &local);
          return Value::of(std::string(buf, n));
        }));
  return g;
}

}  // namespace freekv::jinja
