// Checks of a Generate request the coordinator makes before any worker sees it: sizes and values that
// need no model. The worker checks what depends on the model (vocabulary, positions).
#pragma once

#include <cstdint>

#include "common/status.h"
#include "freekv/v1/generation.pb.h"

namespace freekv {

struct CoordinatorLimits {
  int64_t max_prompt_bytes = 4 << 20;
  int64_t max_prompt_ids = 1 << 20;
};

absl::Status check_generate_request(const v1::GenerateRequest& r, const CoordinatorLimits& limits);

}  // namespace freekv
