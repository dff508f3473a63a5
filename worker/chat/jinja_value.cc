#include "worker/chat/jinja_value.h"

#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace freekv::jinja {

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::set(const std::string& key, Value value) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(key, std::move(value));
}

const Value* CallArgs::keyword_arg(std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Value::of(bool b) {
  Value v{Kind::kBool};
  v.boolean = b;
  return v;
}
Value Value::of(int64_t i) {
  Value v{Kind::kInt};
  v.integer = i;
  return v;
}
Value Value::of(double d) {
  Value v{Kind::kFloat};
  v.number = d;
  return v;
}
Value Value::of(std::string s) {
  Value v{Kind::kString};
  v.text = std::move(s);
  return v;
}
Value Value::of(List items) {
  Value v{Kind::kList};
  v.list = std::make_shared<List>(std::move(items));
  CycleBreaker::note(v);
  return v;
}
Value Value::of(Dict entries) {
  Value v{Kind::kDict};
  v.dict = std::make_shared<Dict>(std::move(entries));
  CycleBreaker::note(v);
  return v;
}
Value Value::namespace_of(Dict entries) {
  Value v = of(std::move(entries));
  v.kind = Kind::kNamespace;
  return v;
}
Value Value::callable(Function fn) {
  Value v{Kind::kFunction};
  v.function = std::make_shared<Function>(std::move(fn));
  CycleBreaker::note(v);
  return v;
}

namespace {
thread_local CycleBreaker* active_breaker = nullptr;
}  // namespace

CycleBreaker::CycleBreaker() : outer_(active_breaker) { active_breaker = this; }

CycleBreaker::~CycleBreaker() {
  active_breaker = outer_;
  // Hold every container still alive first, so emptying one frees nothing; each is freed afterwards,
  // already empty.
  struct Held {
    std::shared_ptr<List> list;
    std::shared_ptr<Dict> dict;
    std::shared_ptr<Function> function;
  };
  std::vector<Held> held;
  held.reserve(made_.size());
  for (const Made& m : made_) held.push_back(Held{m.list.lock(), m.dict.lock(), m.function.lock()});
  for (Held& h : held) {
    if (h.list) h.list->clear();
    if (h.dict) h.dict->clear();
    if (h.function) *h.function = nullptr;
  }
}

void CycleBreaker::note(const Value& v) {
  if (active_breaker == nullptr || (!v.list && !v.dict && !v.function)) return;
  active_breaker->made_.push_back(Made{v.list, v.dict, v.function});
}

Value Value::from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return of(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return of(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: return of(int64_t(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return of(j.get<double>());
    case nlohmann::json::value_t::string: return of(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(from_json(e));
      return of(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.set(it.key(), from_json(it.value()));
      return of(std::move(d));
    }
    default: return Value{};
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return boolean;
    case Kind::kInt: return integer != 0;
    case Kind::kFloat: return number != 0;
    case Kind::kString: return !text.empty();
    case Kind::kList: return !list->empty();
    case Kind::kDict: return dict->size() > 0;
    case Kind::kNamespace:
    case Kind::kFunction: return true;
  }
  return false;
}

namespace {

// Shortest text that reads back as d, as JavaScript's Number#toString prints it for ordinary magnitudes.
std::string shortest_double(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, end);
}

void append_json_string(std::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20) {
          *out += absl::StrFormat("\\u%04x", c);
        } else {
          out->push_back(char(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string Value::to_output() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone: return "";
    case Kind::kBool: return boolean ? "true" : "false";
    case Kind::kInt: return absl::StrCat(integer);
    case Kind::kFloat: {
      if (number == 0 && std::signbit(number)) return "-0.0";
      if (std::isfinite(number) && number == std::floor(number) && std::fabs(number) < 1e21) {
        return absl::StrFormat("%.1f", number);
      }
      return shortest_double(number);
    }
    case Kind::kString: return text;
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace: return to_json_text(*this, 0);
    case Kind::kFunction: return "[function]";
  }
  return "";
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "none";
    case Kind::kBool: return "boolean";
    case Kind::kInt: return "integer";
    case Kind::kFloat: return "float";
    case Kind::kString: return "string";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "namespace";
    case Kind::kFunction: return "function";
  }
  return "?";
}

bool loosely_equal(const Value& a, const Value& b) {
  const bool a_nullish = a.is_none() || a.is_undefined(), b_nullish = b.is_none() || b.is_undefined();
  if (a_nullish || b_nullish) return a_nullish && b_nullish;
  auto numeric = [](const Value& v) { return v.is_number() || v.kind == Kind::kBool; };
  if (numeric(a) && numeric(b)) {
    auto as_number = [](const Value& v) { return v.kind == Kind::kBool ? double(v.boolean) : v.as_double(); };
    return as_number(a) == as_number(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kString: return a.text == b.text;
    case Kind::kList: return a.list == b.list;
    case Kind::kDict:
    case Kind::kNamespace: return a.dict == b.dict;
    case Kind::kFunction: return a.function == b.function;
    default: return false;
  }
}

std::string to_json_text(const Value& value, int indent, int depth) {
  std::string out;
  switch (value.kind) {
    case Kind::kUndefined:
    case Kind::kNone: return "null";
    case Kind::kBool: return value.boolean ? "true" : "false";
    case Kind::kInt: return absl::StrCat(value.integer);
    case Kind::kFloat: return std::isfinite(value.number) ? shortest_double(value.number) : "null";
    case Kind::kString: append_json_string(value.text, &out); return out;
    case Kind::kFunction: throw TemplateError("tojson: a function cannot be written as JSON");
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace: break;
  }
  const bool is_list = value.kind == Kind::kList;
  const size_t n = is_list ? value.list->size() : value.dict->size();
  const std::string item_separator = indent > 0 ? "," : ", ";
  const std::string pad = "\n" + std::string(size_t(indent) * size_t(depth), ' ');
  const std::string child_pad = pad + std::string(size_t(indent), ' ');
  out.push_back(is_list ? '[' : '{');
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += item_separator;
    if (indent > 0) out += child_pad;
    if (is_list) {
      out += to_json_text((*value.list)[i], indent, depth + 1);
    } else {
      const auto& [key, item] = value.dict->items()[i];
      append_json_string(key, &out);
      out += ": ";
      out += to_json_text(item, indent, depth + 1);
    }
  }
  if (indent > 0 && n > 0) out += pad;
  out.push_back(is_list ? ']' : '}');
  return out;
}

}  // namespace freekv::jinja
