#include "common/units.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace freekv {

absl::StatusOr<uint64_t> parse_size(std::string_view text) {
  // Debian's Abseil has its own string_view type; work on std::string here.
  const std::string text_str(text);
  std::string s(absl::StripAsciiWhitespace(text_str));
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string number = s.substr(0, i);
  std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s.substr(i)));
  double value;
  if (number.empty() || !absl::SimpleAtod(number, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text_str, "' does not start with a number; write e.g. 8GiB, 512MiB or 4096"));
  }
  double mult;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "kb") mult = 1e3;
  else if (unit == "mb") mult = 1e6;
  else if (unit == "gb") mult = 1e9;
  else if (unit == "tb") mult = 1e12;
  else {
    return absl::InvalidArgumentError(absl::StrCat(
        "size '", text_str, "' has unknown unit '", unit, "'; use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB"));
  }
  double bytes = value * mult;
  if (bytes >= 18446744073709551615.0) {
    return absl::InvalidArgumentError(absl::StrCat("size '", text_str, "' is too large"));
  }
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_size(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  if (v == std::floor(v)) return absl::StrFormat("%.0f %s", v, kUnits[u]);
  return absl::StrFormat("%.2f %s", v, kUnits[u]);
}

}  // namespace freekv
