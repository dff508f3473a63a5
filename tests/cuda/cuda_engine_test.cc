// The engine on `--device cuda:0` (worker/gpu/cuda_step_backend) against the same engine on the CPU:
// Engine::generate of a prompt over several prefill chunks and a decode, its logits at every position
// with the CPU's tokens forced; the scheduler running three requests on a GPU pool of two sequences
// (the third waits for a region, then all three have the CPU's logits); a sequence that outgrows its GPU
// region in the middle of a batch fails alone, the other finishes, and the freed region serves the next
// request. Exits 77 without a GPU.
#include <string>

#include "cuda_test_models.h"
#include "cuda_test_util.h"
#include "worker/engine/generate.h"
#include "worker/engine/scheduler.h"
#include "worker/gpu/device_backend.h"

namespace freekv {
namespace {

using cuda_test::check_close;
using cuda_test::failures;

const cuda_test::Variant kModel = {"engine-llama-gqa", ModelArch::kLlama, 4, 2, 64, false};

EngineOptions engine_options(const char* device, int64_t gpu_sequences = 4, int64_t gpu_tokens = 256) {
  EngineOptions o;
  o.threads = 2;
  o.page_tokens = 16;
  o.prefill_chunk = 32;
  o.device.name = device;
  o.device.sequences = gpu_sequences;
  o.device.tokens_per_sequence = gpu_tokens;
  o.make_device_backend = make_device_backend;
  return o;
}

GenerateRequest request(int prompt_tokens, int max_tokens, int salt) {
  GenerateRequest r;
  for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(int32_t((i * 37 + salt * 11 + 5) % 400));
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.keep_logits = true;
  return r;
}

std::unique_ptr<Engine> load(const EngineOptions& o) {
  auto e = Engine::load(cuda_test::model_dir(kModel), o);
  if (!e.ok()) {
    std::printf("engine on %s: %s FAILED\n", o.device.name.c_str(), e.status().ToString().c_str());
    ++failures;
    return nullptr;
  }
  return std::move(*e);
}

// The CPU's greedy run of r, and the device engine's logits with the CPU's tokens forced.
void compare_generate(Engine& cpu, Engine& gpu, const GenerateRequest& r, const char* what) {
  auto want = cpu.generate(r, nullptr);
  GenerateRequest forced = r;
  if (want.ok()) forced.forced_tokens = want->tokens;
  auto got = gpu.generate(forced, nullptr);
  if (!want.ok() || !got.ok()) {
    std::printf("%s: cpu %s gpu %s FAILED\n", what, want.status().ToString().c_str(), got.status().ToString().c_str());
    ++failures;
    return;
  }
  check_close(what, got->logits, want->logits, 3e-2);
}

void generate_matches_cpu() {
  auto cpu = load(engine_options("cpu"));
  auto gpu = load(engine_options("cuda:0"));
  if (cpu == nullptr || gpu == nullptr) return;
  std::printf("backend: %s\n", gpu->backend().device().c_str());
  compare_generate(*cpu, *gpu, request(90, 20, 1), "generate: 90-token prompt (3 chunks) + 20 tokens");
  // The region of the finished sequence is reused from position 0.
  compare_generate(*cpu, *gpu, request(17, 5, 2), "generate again: 17-token prompt + 5 tokens");
}

// Runs `requests` through a scheduler on `gpu` with the CPU's greedy tokens forced, and compares each
// finished one's logits with the CPU's; returns the jobs.
std::vector<std::shared_ptr<Job>> run_batch(Engine& cpu, Engine& gpu, std::vector<GenerateRequest> requests,
                                            int max_batch, std::vector<GenerateResult>* want) {
  for (GenerateRequest& r : requests) {
    auto w = cpu.generate(r, nullptr);
    if (!w.ok()) ++failures;
    r.forced_tokens = w.ok() ? w->tokens : std::vector<int32_t>{};
    want->push_back(w.ok() ? *w : GenerateResult{});
  }
  std::vector<std::shared_ptr<Job>> jobs;
  SchedulerOptions so;
  so.max_batch = max_batch;
  Scheduler scheduler(&gpu, so);
  for (const GenerateRequest& r : requests) jobs.push_back(*scheduler.submit(r));
  for (auto& job : jobs) {
    while (!job->done()) job->wait(Job::Clock::now() + std::chrono::milliseconds(20));
  }
  return jobs;
}

void expect_logits(const Job& job, const GenerateResult& want, const std::string& what) {
  if (job.result().ok()) {
    check_close(what.c_str(), job.result()->logits, want.logits, 3e-2);
  } else {
    std::printf("%s: %s FAILED\n", what.c_str(), job.result().status().ToString().c_str());
    ++failures;
  }
}

void scheduler_waits_for_a_region() {
  auto cpu = load(engine_options("cpu"));
  auto gpu = load(engine_options("cuda:0", /*gpu_sequences=*/2));
  if (cpu == nullptr || gpu == nullptr) return;
  std::vector<GenerateResult> want;
  // Four seats asked, two GPU regions: the third request waits until one of the first two finishes.
  auto jobs = run_batch(*cpu, *gpu, {request(50, 6, 3), request(33, 9, 4), request(20, 4, 5)}, 4, &want);
  for (size_t i = 0; i < jobs.size(); ++i) expect_logits(*jobs[i], want[i], "scheduler request " + std::to_string(i));
}

void outgrown_region_fails_alone() {
  auto cpu = load(engine_options("cpu"));
  auto gpu = load(engine_options("cuda:0", 2, /*gpu_tokens=*/64));
  if (cpu == nullptr || gpu == nullptr) return;
  std::vector<GenerateResult> want;
  // 60 prompt tokens and 9 fed back outgrow a 64-token region mid-decode; the other request finishes.
  auto jobs = run_batch(*cpu, *gpu, {request(60, 10, 6), request(30, 12, 8)}, 2, &want);
  const absl::Status s = jobs[0]->result().status();
  const bool refused = s.code() == absl::StatusCode::kResourceExhausted &&
                       s.message().find("--gpu-tokens") != std::string::npos;
  std::printf("%-48s %s %s\n", "a sequence past its GPU region", s.ToString().c_str(), refused ? "ok" : "FAILED");
  failures += refused ? 0 : 1;
  expect_logits(*jobs[1], want[1], "its batch neighbour");
  compare_generate(*cpu, *gpu, request(40, 8, 7), "the next request in the freed region");
}

void all() {
  generate_matches_cpu();
  scheduler_waits_for_a_region();
  outgrown_region_fails_alone();
}

}  // namespace
}  // namespace freekv

int main() { return freekv::cuda_test::run_cuda_tests(freekv::all); }
