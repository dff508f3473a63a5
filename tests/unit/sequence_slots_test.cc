// SequenceSlots (which device KV region holds which sequence) against a model of the rule over random
// sequences of first steps and releases: a sequence keeps its slot until released, two sequences never
// share one, the lowest free slot is taken, and a full pool refuses with the count. Then the --device
// names.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "worker/gpu/device_backend.h"
#include "worker/gpu/sequence_slots.h"

namespace freekv {
namespace {

TEST(SequenceSlots, FollowTheRuleOverRandomStepsAndReleases) {
  for (uint32_t seed = 0; seed < 100; ++seed) {
    std::mt19937 rng(seed);
    const int64_t n = 1 + int64_t(rng() % 5);
    SequenceSlots slots(n);
    std::map<const Sequence*, int64_t> model;  // sequence → slot
    // Fake sequence addresses from a small set, so that released ones come back (address reuse).
    auto seq = [](int i) { return reinterpret_cast<const Sequence*>(uintptr_t(0x1000 + 64 * i)); };
    for (int op = 0; op < 200; ++op) {
      const Sequence* s = seq(int(rng() % 8));
      if (rng() % 3 == 0) {
        auto it = model.find(s);
        EXPECT_EQ(slots.release(s), it == model.end() ? -1 : it->second);
        if (it != model.end()) model.erase(it);
      } else {
        absl::StatusOr<int64_t> got = slots.slot_for(s);
        if (auto it = model.find(s); it != model.end()) {
          ASSERT_TRUE(got.ok());
          EXPECT_EQ(*got, it->second);
        } else if (int64_t(model.size()) == n) {
          EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
          EXPECT_NE(got.status().message().find(std::to_string(n)), std::string::npos) << got.status();
        } else {
          std::set<int64_t> used;
          for (const auto& [k, v] : model) used.insert(v);
          int64_t lowest = 0;
          while (used.count(lowest) != 0) ++lowest;
          ASSERT_TRUE(got.ok()) << got.status();
          EXPECT_EQ(*got, lowest);
          model[s] = *got;
        }
      }
      EXPECT_EQ(slots.in_use(), int64_t(model.size()));
    }
  }
}

TEST(SequenceSlots, DeviceNames) {
  EXPECT_EQ(*cuda_device_index("cuda:0"), 0);
  EXPECT_EQ(*cuda_device_index("cuda:3"), 3);
  for (const char* bad : {"cpu", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "CUDA:0"}) {
    absl::StatusOr<int> got = cuda_device_index(bad);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(got.status().message().find(bad), std::string::npos) << got.status();
  }
}

}  // namespace
}  // namespace freekv
