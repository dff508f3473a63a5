// Writes NumPy .npy files (format 1.0, little-endian float32, C order) for logits dumps and tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace freekv {

// data: [prod(shape)] float32 in C order.
absl::Status write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace freekv
