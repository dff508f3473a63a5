#include "worker/gpu/device_kv_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace freekv {

absl::Status plan_device_step(const DeviceKvGeometry& g, const std::vector<DeviceStepInput>& inputs,
                              DeviceStepPlan* plan) {
  std::vector<bool> seen(size_t(std::max<int64_t>(g.slots, 0)), false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DeviceStepInput& in = inputs[i];
    if (in.slot < 0 || in.slot >= g.slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("step input ", i, ": slot ", in.slot, " is outside the device KV pool's ", g.slots, " slots"));
    }
    if (seen[size_t(in.slot)]) {
      return absl::InvalidArgumentError(absl::StrCat("step input ", i, ": slot ", in.slot,
                                                     " appears twice in one step; give each sequence one input"));
    }
    seen[size_t(in.slot)] = true;
    if (in.n_new < 1 || in.n_past < 0) {
      return absl::InvalidArgumentError(absl::StrCat("step input ", i, ": ", in.n_new, " new tokens after ",
                                                     in.n_past, "; a step input needs at least one token"));
    }
    if (in.n_past + in.n_new > g.max_tokens()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "slot ", in.slot, " would hold ", in.n_past + in.n_new, " tokens; the device KV pool gives a sequence ",
          g.max_tokens(), " (raise the per-sequence token limit, or the GPU memory limit that bounds it)"));
    }
  }
  *plan = DeviceStepPlan{};
  plan->indptr.push_back(0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DeviceStepInput& in = inputs[i];
    const int64_t total = in.n_past + in.n_new;
    const int64_t pages = (total + g.page.page_tokens - 1) / g.page.page_tokens;
    plan->max_chunks = std::max(plan->max_chunks, pages);
    for (int64_t t = 0; t < in.n_new; ++t) {
      const int64_t pos = in.n_past + t;
      plan->positions.push_back(int32_t(pos));
      plan->query_seq.push_back(int32_t(i));
      plan->visible.push_back(int32_t(pos + 1));
      plan->write_token.push_back(int32_t(pos % g.page.page_tokens));
      for (int64_t h = 0; h < g.page.n_kv_heads; ++h) plan->write_chunk.push_back(g.chunk_id(in.slot, h, pos / g.page.page_tokens));
    }
    for (int64_t h = 0; h < g.page.n_kv_heads; ++h) {
      for (int64_t p = 0; p < pages; ++p) plan->indices.push_back(g.chunk_id(in.slot, h, p));
      plan->indptr.push_back(int32_t(plan->indices.size()));
      plan->last_len.push_back(int32_t(total - (pages - 1) * g.page.page_tokens));
    }
  }
  return absl::OkStatus();
}

}  // namespace freekv
