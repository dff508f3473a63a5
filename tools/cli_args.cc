#include "tools/cli_args.h"

#include <cstdio>

#include "absl/strings/numbers.h"

namespace freekv {

ArgParser::ArgParser(std::string usage, std::string summary)
    : usage_(std::move(usage)), summary_(std::move(summary)) {}

void ArgParser::add_string(const std::string& name, std::string* out, const std::string& help, bool required) {
  options_.push_back({name, Kind::kString, out, help, required});
}
void ArgParser::add_int(const std::string& name, int64_t* out, const std::string& help, bool required) {
  options_.push_back({name, Kind::kInt, out, help, required});
}
void ArgParser::add_double(const std::string& name, double* out, const std::string& help) {
  options_.push_back({name, Kind::kDouble, out, help, false});
}
void ArgParser::add_bool(const std::string& name, bool* out, const std::string& help) {
  options_.push_back({name, Kind::kBool, out, help, false});
}
void ArgParser::add_list(const std::string& name, std::vector<std::string>* out, const std::string& help) {
  options_.push_back({name, Kind::kList, out, help, false});
}

ArgParser::Option* ArgParser::find(const std::string& name) {
  for (auto& o : options_) if (o.name == name) return &o;
  return nullptr;
}

bool ArgParser::was_set(const std::string& name) const {
  for (const auto& o : options_) if (o.name == name) return o.set;
  return false;
}

absl::Status ArgParser::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'; see --help"));
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Option* o = find(name);
    if (o == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option --", name, "; see --help"));
    if (o->kind == Kind::kBool) {
      if (has_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value (or =true / =false)"));
      }
      *static_cast<bool*>(o->out) = !has_value || value == "true";
      o->set = true;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    switch (o->kind) {
      case Kind::kString: *static_cast<std::string*>(o->out) = value; break;
      case Kind::kList: static_cast<std::vector<std::string>*>(o->out)->push_back(value); break;
      case Kind::kInt:
        if (!absl::SimpleAtoi(value, static_cast<int64_t*>(o->out))) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " wants an integer, got '", value, "'"));
        }
        break;
      case Kind::kDouble:
        if (!absl::SimpleAtod(value, static_cast<double*>(o->out))) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " wants a number, got '", value, "'"));
        }
        break;
      case Kind::kBool: break;
    }
    o->set = true;
  }
  for (const auto& o : options_) {
    if (o.required && !o.set) {
      return absl::InvalidArgumentError(absl::StrCat("--", o.name, " is required; see --help"));
    }
  }
  return absl::OkStatus();
}

std::string ArgParser::help() const {
  std::string out = absl::StrCat("usage: ", usage_, "\n\n", summary_, "\n\noptions:\n");
  for (const auto& o : options_) {
    std::string flag = "--" + o.name;
    switch (o.kind) {
      case Kind::kString: case Kind::kList: flag += " TEXT"; break;
      case Kind::kInt: flag += " N"; break;
      case Kind::kDouble: flag += " X"; break;
      case Kind::kBool: break;
    }
    std::string def;
    if (!o.required) {
      switch (o.kind) {
        case Kind::kString: {
          auto& s = *static_cast<std::string*>(o.out);
          if (!s.empty()) def = " (default: " + s + ")";
          break;
        }
        case Kind::kInt: def = absl::StrCat(" (default: ", *static_cast<int64_t*>(o.out), ")"); break;
        case Kind::kDouble: def = absl::StrCat(" (default: ", *static_cast<double*>(o.out), ")"); break;
        default: break;
      }
    } else {
      def = " (required)";
    }
    out += absl::StrFormat("  %-26s %s%s\n", flag, o.help, def);
  }
  out += absl::StrFormat("  %-26s %s\n", "--help", "show this help");
  return out;
}

int handle_parse_result(const ArgParser& parser, const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    return 2;
  }
  if (parser.help_requested()) {
    std::fputs(parser.help().c_str(), stdout);
    return 0;
  }
  return -1;
}

int report_error(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "freekv %s: %s\n", command.c_str(), std::string(status.message()).c_str());
  return 1;
}

}  // namespace freekv
