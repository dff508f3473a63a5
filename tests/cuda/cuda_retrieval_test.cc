// Retrieval on the device against the worker's CPU rules: key statistics (kernels/ops.h), combined
// page scores (selection.h score_candidates, avg and avgsm), top-k (top_k_pages applied to the same
// scores, ties included) and membership/victims (plan_slot_updates, compared move by move over many
// random seeds with some heads keeping pages, some not, and empty slots). Exits 77 without a GPU.
#include <cstring>
#include <random>

#include "kernels/cuda/ops_cuda.h"
#include "kernels/ops.h"
#include "kernels/shared_math.h"
#include "tests/cuda/cuda_test_util.h"
#include "worker/retrieval/selection.h"

namespace freekv {
namespace {

using cuda_test::check_close;
using cuda_test::check_equal;
using cuda_test::DeviceBuffer;

bool test_key_stats() {
  const int64_t pt = 32, hd = 128, n_chunks = 12;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> pool(size_t(n_chunks * 2 * pt * hd));
  for (auto& v : pool) v = f32_to_bf16(nd(rng));
  const std::vector<int32_t> ids = {3, 0, 11, 7}, n_tokens = {32, 1, 17, 32};
  std::vector<float> want(ids.size() * 3 * hd);
  for (size_t i = 0; i < ids.size(); ++i) {
    page_key_stats(pool.data() + paged_elem_offset(ids[i], 0, 0, 0, pt, hd), DType::kBF16, n_tokens[i], hd,
                   want.data() + i * 3 * hd);
  }
  DeviceBuffer<uint16_t> dpool(pool);
  DeviceBuffer<int32_t> dids(ids), dn(n_tokens);
  DeviceBuffer<float> dstats(want.size());
  CUDA_OK(page_key_stats_cuda(dpool.get(), DType::kBF16, dids.get(), dn.get(), int64_t(ids.size()), pt, hd, dstats.get(), nullptr));
  return check_close("page key stats (max, min, mad) at page completion", dstats.to_host(), want, 1e-6);
}

// top_k_pages_cuda over device scores [n_rows, max_pages]; the selection [n_rows, k] in *selected.
bool device_top_k(const DeviceBuffer<float>& scores, const DeviceBuffer<int32_t>& n_pages, int64_t n_rows,
                  int64_t max_pages, int64_t k, std::vector<int32_t>* selected) {
  DeviceBuffer<int32_t> dsel(static_cast<size_t>(n_rows * k));
  TopKScratch* scratch = nullptr;
  CUDA_OK(top_k_scratch_create(&scratch, n_rows, max_pages));
  const cudaError_t e = top_k_pages_cuda(scratch, scores.get(), n_pages.get(), n_rows, max_pages, k, dsel.get(), nullptr);
  top_k_scratch_destroy(scratch);
  CUDA_OK(e);
  *selected = dsel.to_host();
  return true;
}

// Row r of a device selection against the CPU rule (top_k_pages) on the same scores.
bool check_top_k_row(const char* what, const std::vector<float>& row_scores, const std::vector<int32_t>& selected,
                     int64_t r, int64_t k) {
  std::vector<int32_t> want = top_k_pages(row_scores, 0, k);
  want.resize(size_t(k), -1);
  return check_equal(what, std::vector<int32_t>(selected.begin() + r * k, selected.begin() + (r + 1) * k), want);
}

// Scores, then top-k, for rows with different candidate counts (fewer than k in one row), with ties
// planted. Returns the selection through *selected_out for the caller's comparison.
bool test_scores_and_top_k(GqaScore gqa, const char* what) {
  const int64_t n_seqs = 2, n_heads = 8, n_kv = 2, hd = 64, group = n_heads / n_kv, n_rows = n_seqs * n_kv, k = 24;
  const std::vector<int32_t> n_pages = {300, 5, 1000, 24};
  const int64_t max_pages = 1000;
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(size_t(n_seqs * n_heads * hd));
  for (auto& v : q) v = nd(rng);
  std::vector<int64_t> offset;
  std::vector<float> digests;
  for (int64_t r = 0; r < n_rows; ++r) {
    offset.push_back(int64_t(digests.size()));
    for (int64_t j = 0; j < n_pages[size_t(r)]; ++j) {
      for (int64_t i = 0; i < hd; ++i) digests.push_back(0.5f + std::fabs(nd(rng)));  // upper
      for (int64_t i = 0; i < hd; ++i) digests.push_back(-0.5f - std::fabs(nd(rng)));  // lower
    }
  }
  // Ties: row 2's pages 10 and 900, and 11 and 12, get identical digests.
  for (auto [a, b] : {std::pair<int64_t, int64_t>{10, 900}, {11, 12}}) {
    std::memcpy(digests.data() + offset[2] + b * 2 * hd, digests.data() + offset[2] + a * 2 * hd, 2 * hd * sizeof(float));
  }
  DeviceBuffer<float> dq(q), ddig(digests), dws(size_t(n_rows * group * max_pages)), dscores(size_t(n_rows * max_pages));
  DeviceBuffer<int64_t> doff(offset);
  DeviceBuffer<int32_t> dn(n_pages);
  const GqaCombine combine = gqa == GqaScore::kAvg ? GqaCombine::kAvg : GqaCombine::kAvgSoftmax;
  CUDA_OK(page_scores_cuda(dq.get(), n_heads, n_kv, hd, ddig.get(), doff.get(), dn.get(), n_rows, max_pages, combine,
                           dws.get(), dscores.get(), nullptr));
  std::vector<int32_t> sel;
  if (!device_top_k(dscores, dn, n_rows, max_pages, k, &sel)) return false;
  const std::vector<float> got = dscores.to_host();
  bool ok = true;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t seq = r / n_kv, h = r % n_kv, n = n_pages[size_t(r)];
    const std::vector<float> want = score_candidates(q.data() + (seq * n_heads + h * group) * hd, group,
                                                     digests.data() + offset[size_t(r)], 0, n, hd, gqa);
    const std::vector<float> row(got.begin() + r * max_pages, got.begin() + r * max_pages + n);
    char line[96];
    std::snprintf(line, sizeof line, "%s scores, row %lld (%lld pages)", what, (long long)r, (long long)n);
    ok &= check_close(line, row, want, 1e-5);
    // The selection rule on the device's own scores: the k best, ties to the lower page, ascending.
    std::snprintf(line, sizeof line, "%s top-%lld, row %lld", what, (long long)k, (long long)r);
    ok &= check_top_k_row(line, row, sel, r, k);
  }
  return ok;
}

// plan_slot_updates on the device against the CPU rule over many random states: per row a random
// set of held pages (some slots empty), a selection that keeps some of them (all, none, or part).
bool test_plan_slots() {
  const int64_t n_rows = 16, n_slots = 64, k = 48, n_pages = 200;
  std::vector<int32_t> all_slots, all_sel, want_moves(size_t(n_rows * k * 2), 0), want_n;
  std::mt19937 rng(13);
  for (int seed = 0; seed < 40; ++seed) {
    all_slots.clear();
    all_sel.clear();
    want_n.clear();
    std::fill(want_moves.begin(), want_moves.end(), 0);
    for (int64_t r = 0; r < n_rows; ++r) {
      std::vector<int32_t> pages(static_cast<size_t>(n_pages));
      for (size_t i = 0; i < pages.size(); ++i) pages[i] = int32_t(i);
      std::shuffle(pages.begin(), pages.end(), rng);
      const int64_t n_held = int64_t(rng() % (n_slots + 1));
      std::vector<int32_t> slots(pages.begin(), pages.begin() + n_held);
      slots.resize(size_t(n_slots), -1);
      std::shuffle(slots.begin(), slots.end(), rng);
      // Keep a random share of the held pages (0 %, 100 % or anything between), fill from the rest.
      const int64_t keep = std::min<int64_t>(n_held, r % 3 == 0 ? 0 : r % 3 == 1 ? k : int64_t(rng() % (k + 1)));
      const int64_t n_sel = std::min<int64_t>(k, keep + int64_t(rng() % (k + 1)));
      std::vector<int32_t> sel(pages.begin(), pages.begin() + keep);
      for (int64_t i = n_held; int64_t(sel.size()) < n_sel; ++i) sel.push_back(pages[size_t(i)]);
      std::sort(sel.begin(), sel.end());
      const std::vector<SlotMove> moves = plan_slot_updates(slots, sel);
      want_n.push_back(int32_t(moves.size()));
      for (size_t i = 0; i < moves.size(); ++i) {
        want_moves[size_t(r * k * 2) + 2 * i] = moves[i].slot;
        want_moves[size_t(r * k * 2) + 2 * i + 1] = moves[i].page;
      }
      sel.resize(size_t(k), -1);
      all_slots.insert(all_slots.end(), slots.begin(), slots.end());
      all_sel.insert(all_sel.end(), sel.begin(), sel.end());
    }
    DeviceBuffer<int32_t> dslots(all_slots), dsel(all_sel), dmoves(std::vector<int32_t>(want_moves.size(), 0)),
        dn(static_cast<size_t>(n_rows));
    CUDA_OK(plan_slot_updates_cuda(dslots.get(), n_slots, dsel.get(), k, n_rows, dmoves.get(), dn.get(), nullptr));
    const std::vector<int32_t> got_n = dn.to_host();
    std::vector<int32_t> got_moves = dmoves.to_host();
    if (got_n != want_n || got_moves != want_moves) {
      std::printf("plan_slot_updates differs from the CPU rule at seed %d FAILED\n", seed);
      ++cuda_test::failures;
      return false;
    }
  }
  std::printf("%-48s 40 seeds x 16 rows equal ok\n", "membership and victims (plan_slot_updates)");
  return true;
}

// Rows longer than one block sorts (4096 pages) go through the segmented sort: random scores with
// runs of ties, against top_k_pages on the same scores.
bool test_top_k_long_rows() {
  const int64_t n_rows = 3, max_pages = 6000, k = 200;
  const std::vector<int32_t> n_pages = {6000, 4097, 150};
  std::mt19937 rng(14);
  std::vector<float> scores(size_t(n_rows * max_pages), -INFINITY);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t j = 0; j < n_pages[size_t(r)]; ++j) scores[size_t(r * max_pages + j)] = float(rng() % 500) * 0.25f;
  }
  DeviceBuffer<float> dscores(scores);
  DeviceBuffer<int32_t> dn(n_pages);
  std::vector<int32_t> sel;
  if (!device_top_k(dscores, dn, n_rows, max_pages, k, &sel)) return false;
  bool ok = true;
  for (int64_t r = 0; r < n_rows; ++r) {
    const std::vector<float> row(scores.begin() + r * max_pages, scores.begin() + r * max_pages + n_pages[size_t(r)]);
    char line[96];
    std::snprintf(line, sizeof line, "segmented top-%lld with ties, row of %d pages", (long long)k, n_pages[size_t(r)]);
    ok &= check_top_k_row(line, row, sel, r, k);
  }
  return ok;
}

void run() {
  test_key_stats();
  test_top_k_long_rows();
  test_scores_and_top_k(GqaScore::kAvg, "avg");
  test_scores_and_top_k(GqaScore::kAvgSoftmax, "avgsm");
  test_plan_slots();
}

}  // namespace
}  // namespace freekv

int main() { return freekv::cuda_test::run_cuda_tests(freekv::run); }
