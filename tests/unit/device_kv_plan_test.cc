// The GPU pass's step plan (worker/gpu/device_kv_plan.h) against a separate model of the rule: after a
// step, every (sequence, KV head) row attends exactly its sequence's tokens 0 .. n_past + n_new − 1,
// each at the place its K/V was written when it was new, and no two slots share a place. Ragged
// batches over random seeds, the boundaries (a page filled exactly, the slot's last token, one past),
// and the errors.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <utility>

#include "worker/gpu/device_kv_plan.h"

namespace freekv {
namespace {

DeviceKvGeometry geometry(int64_t slots, int64_t max_pages, int64_t page_tokens) {
  DeviceKvGeometry g;
  g.page.n_layers = 2;
  g.page.n_kv_heads = 3;
  g.page.head_dim = 64;
  g.page.page_tokens = page_tokens;
  g.slots = slots;
  g.max_pages = max_pages;
  return g;
}

// The model: where each (slot, head, position) lives, recorded when the position is written.
using Place = std::pair<int32_t, int32_t>;  // (chunk, token within it)
using Key = std::tuple<int64_t, int64_t, int64_t>;  // (slot, head, position)

TEST(DeviceKvPlan, RowsAttendEveryTokenWhereItWasWritten) {
  for (uint32_t seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    const int64_t page_tokens = std::uniform_int_distribution<int64_t>(1, 8)(rng);
    const DeviceKvGeometry g = geometry(4, 6, page_tokens);
    std::vector<int64_t> held(4, 0);
    std::map<Key, Place> written;
    std::map<Place, Key> owner;
    for (int step = 0; step < 12; ++step) {
      // A ragged batch: a random subset of the slots, each with 1 .. 2 pages of new tokens that fit.
      std::vector<DeviceStepInput> inputs;
      for (int64_t slot = 0; slot < 4; ++slot) {
        const int64_t room = g.max_tokens() - held[size_t(slot)];
        if (room == 0 || rng() % 2 == 0) continue;
        const int64_t n = std::min(room, std::uniform_int_distribution<int64_t>(1, 2 * page_tokens)(rng));
        inputs.push_back({slot, held[size_t(slot)], n});
      }
      if (inputs.empty()) continue;
      std::shuffle(inputs.begin(), inputs.end(), rng);
      DeviceStepPlan plan;
      ASSERT_TRUE(plan_device_step(g, inputs, &plan).ok());
      // Writes: one place per (new token, head), never another slot's.
      size_t row = 0;
      for (size_t i = 0; i < inputs.size(); ++i) {
        for (int64_t t = 0; t < inputs[i].n_new; ++t, ++row) {
          const int64_t pos = inputs[i].n_past + t;
          EXPECT_EQ(plan.positions[row], pos);
          EXPECT_EQ(plan.query_seq[row], int32_t(i));
          EXPECT_EQ(plan.visible[row], pos + 1);
          for (int64_t h = 0; h < g.page.n_kv_heads; ++h) {
            const Place p{plan.write_chunk[row * size_t(g.page.n_kv_heads) + size_t(h)], plan.write_token[row]};
            ASSERT_GE(p.first, 0);
            ASSERT_LT(p.first, g.chunks_per_layer());
            ASSERT_LT(p.second, page_tokens);
            const Key k{inputs[i].slot, h, pos};
            auto [it, fresh] = owner.emplace(p, k);
            EXPECT_TRUE(fresh || it->second == k) << "seed " << seed << ": a place written for two tokens";
            written[k] = p;
          }
        }
        held[size_t(inputs[i].slot)] += inputs[i].n_new;
      }
      EXPECT_EQ(row, plan.positions.size());
      // Reads: row (input i, head h) walks its chunks; every token it sees is its own, in order.
      ASSERT_EQ(plan.indptr.size(), inputs.size() * size_t(g.page.n_kv_heads) + 1);
      for (size_t i = 0; i < inputs.size(); ++i) {
        for (int64_t h = 0; h < g.page.n_kv_heads; ++h) {
          const size_t r = i * size_t(g.page.n_kv_heads) + size_t(h);
          const int64_t n_chunks = plan.indptr[r + 1] - plan.indptr[r];
          EXPECT_LE(n_chunks, plan.max_chunks);
          int64_t pos = 0;
          for (int64_t c = 0; c < n_chunks; ++c) {
            const int64_t in_chunk = c + 1 < n_chunks ? page_tokens : plan.last_len[r];
            ASSERT_GE(in_chunk, 1);
            for (int64_t t = 0; t < in_chunk; ++t, ++pos) {
              const auto w = written.find(Key{inputs[i].slot, h, pos});
              ASSERT_NE(w, written.end()) << "seed " << seed << ": attends a position never written";
              EXPECT_EQ(w->second, Place(plan.indices[size_t(plan.indptr[r] + c)], int32_t(t)));
            }
          }
          EXPECT_EQ(pos, held[size_t(inputs[i].slot)]) << "seed " << seed;
        }
      }
    }
  }
}

TEST(DeviceKvPlan, PageAndSlotBoundaries) {
  const DeviceKvGeometry g = geometry(2, 3, 4);  // 12 tokens per slot
  DeviceStepPlan plan;
  // A page filled exactly: one chunk, last_len = 4; the next token opens chunk 2.
  ASSERT_TRUE(plan_device_step(g, {{1, 0, 4}}, &plan).ok());
  EXPECT_EQ(plan.indptr[1] - plan.indptr[0], 1);
  EXPECT_EQ(plan.last_len[0], 4);
  ASSERT_TRUE(plan_device_step(g, {{1, 4, 1}}, &plan).ok());
  EXPECT_EQ(plan.indptr[1] - plan.indptr[0], 2);
  EXPECT_EQ(plan.last_len[0], 1);
  EXPECT_EQ(plan.write_chunk[0], g.chunk_id(1, 0, 1));
  EXPECT_EQ(plan.write_token[0], 0);
  // The slot's last token fits; one more does not, and says how many do.
  EXPECT_TRUE(plan_device_step(g, {{0, 11, 1}}, &plan).ok());
  absl::Status s = plan_device_step(g, {{0, 11, 2}}, &plan);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("12"), std::string::npos) << s;
}

TEST(DeviceKvPlan, BadInputsAreRefusedWithTheReason) {
  const DeviceKvGeometry g = geometry(2, 3, 4);
  DeviceStepPlan plan;
  absl::Status s = plan_device_step(g, {{2, 0, 1}}, &plan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("slot 2"), std::string::npos) << s;
  s = plan_device_step(g, {{0, 0, 1}, {0, 1, 1}}, &plan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s;
  s = plan_device_step(g, {{1, 0, 1}, {0, 3, 0}}, &plan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("step input 1"), std::string::npos) << s;
}

}  // namespace
}  // namespace freekv
