// Sizes with units on the command line: "8GiB", "512MiB", "64KiB", "1GB", "4096" (bytes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace freekv {

// Binary (KiB, MiB, GiB, TiB; K, M, G, T) and decimal (kB, MB, GB, TB) suffixes, optional "B".
absl::StatusOr<uint64_t> parse_size(std::string_view text);

// 16777216 -> "16 MiB"; exact multiples print without decimals.
std::string format_size(uint64_t bytes);

}  // namespace freekv
