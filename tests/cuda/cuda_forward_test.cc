// The GPU forward pass (worker/gpu) against the CPU engine's, whole-model logits, for every
// architecture variant (Llama with GQA, Qwen2's q/k/v biases, Qwen3's q/k norms, tied embeddings, head
// dims 64 and 128): a prefill chunk that ends mid-page and splits its attention, a ragged batch of a second prefill and a
// decode, then decode steps across a page boundary. Then the errors: a token outside the vocabulary,
// a slot outgrown, a pool larger than the memory limit. Exits 77 when no GPU is visible.
#include <string>

#include "cuda_test_models.h"
#include "cuda_test_util.h"
#include "worker/engine/generate.h"
#include "worker/gpu/cuda_forward.h"

namespace freekv {
namespace {

using cuda_test::check_close;
using cuda_test::failures;
using cuda_test::Variant;

std::vector<int32_t> tokens(int n, int salt, int vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + salt * 104729 + 13) % vocab);
  return t;
}

// Logits agree to bf16 rounding of the GEMM path's activations (prefill) and of the KV: relative to the
// largest logit.
constexpr double kTol = 3e-2;

bool compare_variant(const Variant& v) {
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = 16;
  auto engine = Engine::load(cuda_test::model_dir(v), o);
  if (!engine.ok()) {
    std::printf("%s: %s FAILED\n", v.name, engine.status().ToString().c_str());
    ++failures;
    return false;
  }
  Engine& e = **engine;
  const int vocab = e.weights().config.vocab;
  auto device_weights = DeviceWeights::upload(e.weights());
  CudaForwardOptions fo;
  fo.slots = 3;
  fo.max_tokens_per_slot = 192;
  fo.page_tokens = 16;
  fo.max_step_rows = 96;
  if (!device_weights.ok()) {
    std::printf("%s: upload %s FAILED\n", v.name, device_weights.status().ToString().c_str());
    ++failures;
    return false;
  }
  auto pass = CudaForwardPass::create(**device_weights, fo);
  if (!pass.ok()) {
    std::printf("%s: create %s FAILED\n", v.name, pass.status().ToString().c_str());
    ++failures;
    return false;
  }
  auto seq_a = e.new_sequence(""), seq_b = e.new_sequence("");
  std::vector<float> cpu, gpu;
  char what[96];

  // An 83-token prefill (five full pages and 3 tokens; the attention splits the later queries' pages
  // over blocks) with every row's logits.
  const std::vector<int32_t> a = tokens(83, 1, vocab), b = tokens(21, 2, vocab);
  absl::Status s = e.forward().step_all({{seq_a->get(), a.data(), 83, true}}, &cpu);
  absl::Status g = (*pass)->step({{0, a.data(), 83, true}}, &gpu);
  if (!s.ok() || !g.ok()) {
    std::printf("%s prefill: cpu %s gpu %s FAILED\n", v.name, s.ToString().c_str(), g.ToString().c_str());
    ++failures;
    return false;
  }
  std::snprintf(what, sizeof what, "%s prefill 83 tokens, all rows", v.name);
  check_close(what, gpu, cpu, kTol);

  // Ragged batch: sequence b's 21-token prefill beside a's first decode token, in slot 2 (not 1).
  const int32_t next_a = a[5];
  s = e.forward().step_all({{seq_b->get(), b.data(), 21, false}, {seq_a->get(), &next_a, 1, false}}, &cpu);
  g = (*pass)->step({{2, b.data(), 21, false}, {0, &next_a, 1, false}}, &gpu);
  std::snprintf(what, sizeof what, "%s ragged batch (21-token prefill + decode)", v.name);
  if (s.ok() && g.ok()) check_close(what, gpu, cpu, kTol);
  else { std::printf("%s FAILED: cpu %s gpu %s\n", what, s.ToString().c_str(), g.ToString().c_str()); ++failures; }

  // Batched decode of both across page boundaries (a: 84 → 144 tokens, b: 22 → 82, crossing into split
  // attention, which takes more than 4 pages per row).
  for (int step = 0; step < 60; ++step) {
    const int32_t ta = a[size_t(step)], tb = b[size_t(step % 21)];
    s = e.forward().step_all({{seq_a->get(), &ta, 1, false}, {seq_b->get(), &tb, 1, false}}, &cpu);
    g = (*pass)->step({{0, &ta, 1, false}, {2, &tb, 1, false}}, &gpu);
    if (!s.ok() || !g.ok()) {
      std::printf("%s decode %d FAILED: cpu %s gpu %s\n", v.name, step, s.ToString().c_str(), g.ToString().c_str());
      ++failures;
      return false;
    }
  }
  std::snprintf(what, sizeof what, "%s decode batch 2 at 144/82 tokens", v.name);
  check_close(what, gpu, cpu, kTol);

  // Greedy on the device picks the CPU logits' argmax (unless the top two are within the tolerance).
  const int32_t ta = a[20], tb = b[20];
  s = e.forward().step_all({{seq_a->get(), &ta, 1, false}, {seq_b->get(), &tb, 1, false}}, &cpu);
  std::vector<int32_t> ids;
  g = (*pass)->step_greedy({{0, &ta, 1, false}, {2, &tb, 1, false}}, &ids);
  for (int i = 0; i < 2 && s.ok() && g.ok(); ++i) {
    const float* row = cpu.data() + size_t(i) * size_t(vocab);
    const int32_t best = int32_t(std::max_element(row, row + vocab) - row);
    const bool ok = ids[size_t(i)] == best || std::fabs(row[ids[size_t(i)]] - row[best]) < 1e-2f * std::fabs(row[best]);
    std::printf("%s greedy id of input %d: gpu %d cpu %d %s\n", v.name, i, ids[size_t(i)], best, ok ? "ok" : "FAILED");
    failures += ok ? 0 : 1;
  }
  if (!s.ok() || !g.ok()) ++failures;
  return true;
}

void expect_error(const char* what, const absl::Status& s, absl::StatusCode code) {
  const bool ok = s.code() == code;
  std::printf("%-48s %s %s\n", what, s.ToString().c_str(), ok ? "ok" : "FAILED");
  failures += ok ? 0 : 1;
}

void errors() {
  const Variant v = {"llama-gqa", ModelArch::kLlama, 4, 2, 64, false};
  EngineOptions o;
  auto engine = Engine::load(cuda_test::model_dir(v), o);
  if (!engine.ok()) { ++failures; return; }
  auto dw = DeviceWeights::upload((*engine)->weights());
  if (!dw.ok()) { ++failures; return; }
  CudaForwardOptions fo;
  fo.slots = 2;
  fo.max_tokens_per_slot = 40;
  fo.page_tokens = 16;  // 3 pages: 48 tokens per slot
  fo.max_step_rows = 64;
  auto pass = CudaForwardPass::create(**dw, fo);
  if (!pass.ok()) { ++failures; return; }
  std::vector<float> logits;
  const int32_t bad = (*engine)->weights().config.vocab;
  expect_error("token outside the vocabulary", (*pass)->step({{0, &bad, 1, false}}, &logits),
               absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> t = tokens(48, 3, bad);
  expect_error("slot outside the pool", (*pass)->step({{2, t.data(), 1, false}}, &logits),
               absl::StatusCode::kInvalidArgument);
  expect_error("one slot twice in a step", (*pass)->step({{1, t.data(), 1, false}, {1, t.data(), 1, false}}, &logits),
               absl::StatusCode::kInvalidArgument);
  // Exactly the slot's 48 tokens fit; one more is refused and leaves the slot as it was.
  expect_error("a slot filled to its last token", (*pass)->step({{0, t.data(), 48, false}}, &logits),
               absl::StatusCode::kOk);
  expect_error("one token past the slot", (*pass)->step({{0, t.data(), 1, false}}, &logits),
               absl::StatusCode::kResourceExhausted);
  const bool kept = (*pass)->n_tokens(0) == 48;
  std::printf("%-48s %lld tokens %s\n", "slot unchanged by the refused step", (long long)(*pass)->n_tokens(0),
              kept ? "ok" : "FAILED");
  failures += kept ? 0 : 1;
  fo.memory_limit = 1 << 20;
  fo.max_tokens_per_slot = 4096;
  expect_error("pool beyond the memory limit", CudaForwardPass::create(**dw, fo).status(),
               absl::StatusCode::kResourceExhausted);
}

void all() {
  const Variant variants[] = {
      {"llama-gqa", ModelArch::kLlama, 4, 2, 64, false},
      {"llama-tied-hd128", ModelArch::kLlama, 4, 1, 128, true},
      {"qwen2-bias", ModelArch::kQwen2, 4, 2, 64, false},
      {"qwen3-qknorm", ModelArch::kQwen3, 8, 2, 64, false},
  };
  for (const Variant& v : variants) compare_variant(v);
  errors();
}

}  // namespace
}  // namespace freekv

int main() { return freekv::cuda_test::run_cuda_tests(freekv::all); }
