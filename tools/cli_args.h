// Command-line options of one `freekv` subcommand: declared once, parsed, and explained by --help.
// Accepts `--name value` and `--name=value`; booleans are bare `--name`. An unknown option, a missing
// value, a value of the wrong type or a missing required option is an INVALID_ARGUMENT naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace freekv {

class ArgParser {
 public:
  ArgParser(std::string usage, std::string summary);

  void add_string(const std::string& name, std::string* out, const std::string& help, bool required = false);
  void add_int(const std::string& name, int64_t* out, const std::string& help, bool required = false);
  void add_double(const std::string& name, double* out, const std::string& help);
  void add_bool(const std::string& name, bool* out, const std::string& help);
  // Repeatable: every occurrence appends.
  void add_list(const std::string& name, std::vector<std::string>* out, const std::string& help);

  // argv[0] is the subcommand. After a successful parse, help_requested() tells whether --help was
  // given (and the caller should print help() and exit 0).
  absl::Status parse(int argc, char** argv);
  bool help_requested() const { return help_requested_; }
  bool was_set(const std::string& name) const;
  std::string help() const;

 private:
  enum class Kind { kString, kInt, kDouble, kBool, kList };
  struct Option {
    std::string name;
    Kind kind;
    void* out;
    std::string help;
    bool required;
    bool set = false;
  };
  Option* find(const std::string& name);

  std::string usage_, summary_;
  std::vector<Option> options_;
  bool help_requested_ = false;
};

// Runs a parsed subcommand's body: prints help or the parse error (exit 2), else returns -1 so the
// caller continues.
int handle_parse_result(const ArgParser& parser, const absl::Status& status);

// Prints "freekv <command>: <message>" for a failed status and returns exit code 1.
int report_error(const std::string& command, const absl::Status& status);

}  // namespace freekv
