// The kvstore block size that fits one page of a model: all its KV heads' K and V for page_tokens
// tokens, plus their key statistics, rounded up to 4 KiB (what `--kvstore-block auto` and `freekv up
// --block-size auto` start a kvstore with, so the pool holds as many pages as its size says).
#pragma once

#include <cstdint>
#include <string>

#include "common/dtype.h"
#include "common/status.h"

namespace freekv {

// Reads model_dir/config.json. Returns e.g. "72KiB".
absl::StatusOr<std::string> kvstore_block_for_model(const std::string& model_dir, int64_t page_tokens, DType kv_dtype);

}  // namespace freekv
