// freekv-worker: one model, continuous batching, FreeKV retrieval; serves the Worker API to the
// coordinator (DESIGN §1).
//
//   freekv-worker --model DIR --kvstore /tmp/freekv-kvstore.sock --coordinator 127.0.0.1:50051
//       --token-file ~/.freekv/admin-token --policy freekv
//
// SIGINT/SIGTERM: stop taking requests, let running ones finish (--drain-grace), then exit. Kept
// sessions stay in the kvstore for another worker.
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/config_check.h"
#include "common/file_util.h"
#include "common/flag_util.h"
#include "common/grpc_util.h"
#include "common/service_metrics.h"
#include "common/units.h"
#include "worker/engine/scheduler.h"
#include "worker/gpu/device_backend.h"
#include "worker/model/config.h"
#include "worker/service/kvstore_control.h"
#include "common/tls.h"
#include "worker/service/registration.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

ABSL_FLAG(std::string, model, FREEKV_DEFAULT_MODEL_DIR,
          "Hugging Face model directory (config.json, *.safetensors, tokenizer.json). Default: the build's default model.");
ABSL_FLAG(std::string, listen, "127.0.0.1:50052",
          "Where to serve the Worker API, host:port (port 0 picks a free one). Loopback by default: the API has no "
          "authentication unless --token-file is given, so only expose it on a private network.");
ABSL_FLAG(std::string, advertise, "",
          "Address the coordinator should dial (default: the --listen host and the bound port; the hostname when "
          "listening on 0.0.0.0).");
ABSL_FLAG(std::string, coordinator, "",
          "Coordinator address (host:port) to register with and heartbeat to. Empty: serve without registering.");
ABSL_FLAG(std::string, coordinator_tls_ca_file, "",
          "PEM certificates to verify the coordinator with when it serves TLS (its --tls-cert-file, or the CA that "
          "signed it). Empty: plaintext.");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token (the coordinator's --admin-token-file): sent when registering, and required "
          "from every caller of the Worker API.");
ABSL_FLAG(std::string, kvstore, "",
          "freekv-kvstore's unix socket. Needed for sessions and for the offloading policies (arkvale, freekv); "
          "workers on the same kvstore can take over each other's sessions.");
ABSL_FLAG(std::string, name, "", "Name shown in the coordinator's logs (default: host:pid).");
ABSL_FLAG(std::string, address_file, "", "Write the bound address here once serving (for scripts and tests).");
ABSL_FLAG(int32_t, threads, 0, "Compute threads (0 = one per hardware thread).");
ABSL_FLAG(std::string, kv_dtype, "bf16", "Storage type of KV pages: bf16 or f16.");
ABSL_FLAG(int64_t, page_tokens, 32, "Tokens per KV page.");
ABSL_FLAG(int64_t, prefill_chunk, 512, "Prompt tokens of one sequence processed per step.");
ABSL_FLAG(std::string, kv_memory, "4GiB", "Memory for the worker's own KV pages, with units.");
ABSL_FLAG(std::string, policy, "full", "Retrieval policy: full, streaming, quest, arkvale or freekv.");
ABSL_FLAG(int64_t, budget, 2048, "Tokens attended per KV head once the context outgrows it (whole pages).");
ABSL_FLAG(int64_t, sink, 512, "First tokens always attended.");
ABSL_FLAG(int64_t, recent, 512, "Last tokens always attended (the partial page included).");
ABSL_FLAG(double, correction_threshold, 0.9,
          "freekv: re-select a KV head when its queries' cosine with the previous step falls below this (1 = always).");
ABSL_FLAG(std::string, gqa_score, "avgsm", "Combine a KV head's query heads by avg (raw scores) or avgsm (softmaxed).");
ABSL_FLAG(std::string, digest, "minmax", "Page digest: minmax (Quest) or center-mad (ArkVale).");
ABSL_FLAG(std::string, dense_layers, "", "Comma-separated layers that always attend the full context.");
ABSL_FLAG(std::string, device, "cpu",
          "Where steps run: cpu, or cuda:N (the GPU runs the full policy, without a kvstore, so far).");
ABSL_FLAG(int64_t, gpu_sequences, 8, "Sequences the GPU holds KV for at once (--device cuda:N); caps --max-batch.");
ABSL_FLAG(int64_t, gpu_tokens, 0, "Tokens of KV the GPU holds per sequence (0 = the model's positions, at most 32768).");
ABSL_FLAG(std::string, gpu_memory, "0",
          "Device memory the KV pool and activations may take beside the weights, with units (0 = what is free).");
ABSL_FLAG(int32_t, max_batch, 8, "Most sequences stepped together (continuous batching).");
ABSL_FLAG(int32_t, recall_staging_pairs, 8,
          "Recalls from the kvstore in flight at once, shared by every sequence and layer (each takes one staging "
          "pair of 2 × the kvstore's --staging-buffer); more only lets more layers prefetch ahead on a GPU.");
ABSL_FLAG(int64_t, max_step_tokens, 0, "Most rows (prefill + decode tokens) of one step; 0 = prefill chunk + max batch.");
ABSL_FLAG(int32_t, max_queue, 1024, "Most requests waiting for a batch seat; beyond it requests are RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, max_prompt_bytes, "4MiB", "Largest prompt text accepted, with units.");
ABSL_FLAG(double, stream_interval_ms, 2,
          "Tokens sampled within this many milliseconds of a stream's previous message go together in the next "
          "one (steps slower than this stream every token at once; 0 = a message per step). Saves CPU when steps "
          "take well under a millisecond.");
ABSL_FLAG(bool, attend_beyond_window, false,
          "In a model with sliding-window layers (Mistral's sliding_window, Qwen2's use_sliding_window), attend the "
          "whole context in those layers instead of their windows: output then departs from the model's past the "
          "window. Default: the CPU engine attends the windows; on a GPU (which attends the whole context) requests "
          "stop at the window.");
ABSL_FLAG(bool, check_config, false,
          "Do not serve: validate the flags, the model directory's config.json, tokenizer.json and safetensors files "
          "(without mapping the weights), the token file and --kv-memory against available memory; print what the "
          "worker would do and exit 0, or 1 listing every problem.");
ABSL_FLAG(int32_t, kvstore_wait_ms, 30000,
          "At start, how long to wait for the kvstore's socket to appear (a kvstore starting beside the worker, as "
          "in a Kubernetes pod); 0 = fail at once when it is missing.");
ABSL_FLAG(int32_t, drain_grace_ms, 10000, "On SIGTERM, how long running requests may take to finish before they are cancelled.");

namespace freekv {
namespace {

// Waits up to wait_ms for the kvstore's unix socket to exist: the containers of a pod start together, and
// without this the worker would exit and be restarted (with a growing back-off) until the kvstore is up.
void wait_for_socket(std::string path, int32_t wait_ms) {
  if (path.compare(0, 5, "unix:") == 0) path = path.substr(5);
  std::error_code ec;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, wait_ms));
  bool said = false;
  while (!std::filesystem::is_socket(path, ec) && std::chrono::steady_clock::now() < until) {
    if (!said) std::fprintf(stderr, "freekv-worker: waiting up to %d ms for the kvstore socket %s\n", wait_ms, path.c_str());
    said = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int fail(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "freekv-worker: %s%s\n", what.c_str(), std::string(s.message()).c_str());
  return 1;
}

absl::StatusOr<EngineOptions> engine_options() {
  EngineOptions o;
  o.threads = absl::GetFlag(FLAGS_threads);
  if (o.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  const std::string dtype = absl::GetFlag(FLAGS_kv_dtype);
  if (dtype == "bf16") o.kv_dtype = DType::kBF16;
  else if (dtype == "f16") o.kv_dtype = DType::kF16;
  else return absl::InvalidArgumentError(absl::StrCat("--kv-dtype must be bf16 or f16, got '", dtype, "'"));
  o.page_tokens = absl::GetFlag(FLAGS_page_tokens);
  o.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  FREEKV_ASSIGN_OR_RETURN(o.kv_memory, parse_size(absl::GetFlag(FLAGS_kv_memory)));
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.policy, parse_policy(absl::GetFlag(FLAGS_policy)));
  o.retrieval.budget = absl::GetFlag(FLAGS_budget);
  o.retrieval.sink = absl::GetFlag(FLAGS_sink);
  o.retrieval.recent = absl::GetFlag(FLAGS_recent);
  o.retrieval.correction_threshold = absl::GetFlag(FLAGS_correction_threshold);
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.gqa_score, parse_gqa_score(absl::GetFlag(FLAGS_gqa_score)));
  FREEKV_ASSIGN_OR_RETURN(o.retrieval.digest, parse_digest(absl::GetFlag(FLAGS_digest)));
  for (auto part : absl::StrSplit(absl::GetFlag(FLAGS_dense_layers), ',', absl::SkipEmpty())) {
    int layer;
    if (!absl::SimpleAtoi(std::string(part), &layer)) {
      return absl::InvalidArgumentError("--dense-layers wants comma-separated layer numbers");
    }
    o.retrieval.dense_layers.push_back(layer);
  }
  if (absl::GetFlag(FLAGS_max_batch) < 1) return absl::InvalidArgumentError("--max-batch must be >= 1");
  if (absl::GetFlag(FLAGS_recall_staging_pairs) < 1) return absl::InvalidArgumentError("--recall-staging-pairs must be >= 1");
  o.recall_staging_pairs = absl::GetFlag(FLAGS_recall_staging_pairs);
  o.kvstore_socket = absl::GetFlag(FLAGS_kvstore);
  o.attend_beyond_window = absl::GetFlag(FLAGS_attend_beyond_window);
  FREEKV_ASSIGN_OR_RETURN(o.device, device_options(absl::GetFlag(FLAGS_device), absl::GetFlag(FLAGS_gpu_sequences),
                                                   absl::GetFlag(FLAGS_gpu_tokens), absl::GetFlag(FLAGS_gpu_memory)));
  o.make_device_backend = make_device_backend;
  return o;
}

std::string advertised_address(const std::string& listen, int port) {
  if (!absl::GetFlag(FLAGS_advertise).empty()) return absl::GetFlag(FLAGS_advertise);
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    host = name;
  }
  return absl::StrCat(host, ":", port);
}

// Checks the model directory cheaply: config.json parsed, tokenizer.json present, the safetensors
// files (those an index names, or model.safetensors) present; no weights are mapped.
void check_model_dir(ConfigCheck& c, const std::string& dir, std::string* description) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    c.error("--model: " + dir + " is not a directory");
    return;
  }
  auto config = load_model_config(dir + "/config.json");
  if (!config.ok()) c.error("--model: " + std::string(config.status().message()));
  else *description = absl::StrCat(config->n_layers, " layers, vocab ", config->vocab);
  if (access((dir + "/tokenizer.json").c_str(), R_OK) != 0) c.error("--model: cannot read " + dir + "/tokenizer.json");
  const std::string index = dir + "/model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    auto text = read_file(index);
    if (!text.ok()) {
      c.error("--model: " + std::string(text.status().message()));
      return;
    }
    // The weight_map's values are the shard file names: every quoted "*.safetensors" string.
    std::set<std::string> shards;
    for (size_t end = text->find(".safetensors\""); end != std::string::npos; end = text->find(".safetensors\"", end + 1)) {
      const size_t start = text->rfind('"', end);
      if (start != std::string::npos) shards.insert(text->substr(start + 1, end + 12 - start - 1));
    }
    if (shards.empty()) c.error("--model: " + index + " names no .safetensors files");
    for (const std::string& f : shards) {
      if (access((dir + "/" + f).c_str(), R_OK) != 0) c.error("--model: cannot read " + dir + "/" + f + " (named by the index)");
    }
  } else if (access((dir + "/model.safetensors").c_str(), R_OK) != 0) {
    c.error("--model: " + dir + " has neither model.safetensors nor model.safetensors.index.json");
  }
}

int check_config() {
  ConfigCheck c("freekv-worker");
  // engine_options() stops at its first problem: check the common culprits one by one first.
  const size_t before = c.error_count();
  c.size("kv-memory", absl::GetFlag(FLAGS_kv_memory));
  if (auto p = parse_policy(absl::GetFlag(FLAGS_policy)); !p.ok()) c.error("--policy: " + std::string(p.status().message()));
  const std::string dtype = absl::GetFlag(FLAGS_kv_dtype);
  if (dtype != "bf16" && dtype != "f16") c.error("--kv-dtype must be bf16 or f16, got '" + dtype + "'");
  auto options = engine_options();
  if (!options.ok() && c.error_count() == before) c.error(std::string(options.status().message()));
  c.size("max-prompt-bytes", absl::GetFlag(FLAGS_max_prompt_bytes));
  c.host_port("listen", absl::GetFlag(FLAGS_listen));
  if (!absl::GetFlag(FLAGS_coordinator).empty()) c.host_port("coordinator", absl::GetFlag(FLAGS_coordinator));
  if (absl::Status s = channel_credentials(absl::GetFlag(FLAGS_coordinator_tls_ca_file)).status(); !s.ok()) {
    c.error(std::string(s.message()));
  }
  if (!absl::GetFlag(FLAGS_advertise).empty()) c.host_port("advertise", absl::GetFlag(FLAGS_advertise));
  c.readable_file("token-file", absl::GetFlag(FLAGS_token_file));
  check_metrics_listen(c);
  const std::string model = absl::GetFlag(FLAGS_model);
  std::string model_desc;
  check_model_dir(c, model, &model_desc);
  const std::string kvstore = absl::GetFlag(FLAGS_kvstore);
  if (!kvstore.empty() && kvstore.front() != '/' && kvstore.rfind("unix:", 0) != 0) {
    c.warning("--kvstore " + kvstore + " is a relative path: it depends on the working directory");
  }
  if (options.ok()) {
    if (absl::Status d = check_device(options->device); !d.ok()) c.error(std::string(d.message()));
    auto avail = mem_available_bytes();
    if (avail && options->kv_memory > *avail) {
      c.error("--kv-memory " + human_bytes(options->kv_memory) + " exceeds MemAvailable " + human_bytes(*avail));
    }
  }
  std::string summary;
  if (c.ok()) {
    summary = absl::StrCat("Would load ", model, " (", model_desc, "), serve the Worker API and health on ",
                           absl::GetFlag(FLAGS_listen), " on ", options->device.name, " with policy ",
                           policy_name(options->retrieval.policy),
                           ", max batch ", absl::GetFlag(FLAGS_max_batch), ", ", human_bytes(options->kv_memory), " of KV memory",
                           kvstore.empty() ? ", no kvstore" : ", kvstore " + kvstore,
                           absl::GetFlag(FLAGS_coordinator).empty() ? ", not registering"
                                                                    : ", registering with " + absl::GetFlag(FLAGS_coordinator),
                           absl::GetFlag(FLAGS_token_file).empty() ? ", no token; " : ", token required; ",
                           metrics_listen_summary(), ".");
  }
  return c.finish(summary);
}

int run() {
  auto options = engine_options();
  if (!options.ok()) return fail("", options.status());
  auto max_prompt = parse_size(absl::GetFlag(FLAGS_max_prompt_bytes));
  if (!max_prompt.ok()) return fail("--max-prompt-bytes: ", max_prompt.status());
  std::string token;
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    auto t = read_token_file(absl::GetFlag(FLAGS_token_file));
    if (!t.ok()) return fail("", t.status());
    token = *t;
  }
  if (!options->kvstore_socket.empty()) wait_for_socket(options->kvstore_socket, absl::GetFlag(FLAGS_kvstore_wait_ms));
  const std::string model = absl::GetFlag(FLAGS_model);
  auto engine = Engine::load(model, *options);
  if (!engine.ok()) return fail(absl::StrCat("cannot load ", model, ": "), engine.status());
  std::unique_ptr<KvstoreControl> kvstore;
  if (!options->kvstore_socket.empty()) {
    auto k = KvstoreControl::connect(options->kvstore_socket);
    if (!k.ok()) return fail("", k.status());
    kvstore = std::move(*k);
  }
  MetricsRegistry metrics;
  WorkerMetrics worker_metrics(&metrics);
  SchedulerOptions so;
  so.observer = &worker_metrics;
  so.max_batch = absl::GetFlag(FLAGS_max_batch);
  so.max_step_tokens = absl::GetFlag(FLAGS_max_step_tokens);
  so.max_queue = absl::GetFlag(FLAGS_max_queue);
  auto scheduler = std::make_unique<Scheduler>(engine->get(), so);
  worker_metrics.watch(scheduler.get(), engine->get());
  RequestLimits limits;
  limits.max_prompt_bytes = int64_t(*max_prompt);
  WorkerService service(engine->get(), scheduler.get(), kvstore.get(), token, limits);
  service.set_stream_interval(std::chrono::microseconds(int64_t(absl::GetFlag(FLAGS_stream_interval_ms) * 1000)));

  const std::string listen = absl::GetFlag(FLAGS_listen);
  auto tcp = start_tcp_server(listen, {&service}, [&](grpc::ServerBuilder& b) { count_rpcs(&b, &metrics); });
  if (!tcp.ok()) return fail("", tcp.status());
  std::unique_ptr<grpc::Server> server = std::move(tcp->server);
  const int port = tcp->port;
  auto metrics_server = serve_metrics("freekv-worker", &metrics);
  if (!metrics_server.ok()) return fail("", metrics_server.status());
  server->GetHealthCheckService()->SetServingStatus("freekv.v1.Worker", true);
  const std::string address = advertised_address(listen, port);
  if (!absl::GetFlag(FLAGS_address_file).empty()) {
    if (absl::Status s = write_file(absl::GetFlag(FLAGS_address_file), address + "\n"); !s.ok()) return fail("", s);
  }
  const ModelConfig& c = (*engine)->weights().config;
  std::fprintf(stderr, "freekv-worker: serving %s on %s (policy %s, max batch %d%s%s)\n", model.c_str(), address.c_str(),
               policy_name(options->retrieval.policy), absl::GetFlag(FLAGS_max_batch), kvstore ? ", kvstore " : "",
               kvstore ? kvstore->id().c_str() : "");

  std::unique_ptr<Registrar> registrar;
  if (!absl::GetFlag(FLAGS_coordinator).empty()) {
    v1::RegisterWorkerRequest info;
    info.set_address(address);
    info.set_name(absl::GetFlag(FLAGS_name).empty() ? absl::StrCat(address, "/", getpid()) : absl::GetFlag(FLAGS_name));
    info.set_kvstore_id(kvstore ? kvstore->id() : "");
    info.set_model(std::filesystem::path(model).filename().string());
    info.set_policy(policy_name(options->retrieval.policy));
    info.set_max_batch(absl::GetFlag(FLAGS_max_batch));
    info.set_max_positions(c.context_limit());
    info.set_vocab(c.vocab);
    info.set_pid(getpid());
    Scheduler* sched = scheduler.get();
    auto credentials = channel_credentials(absl::GetFlag(FLAGS_coordinator_tls_ca_file));
    if (!credentials.ok()) return fail("--coordinator-tls-ca-file: ", credentials.status());
    registrar = std::make_unique<Registrar>(
        absl::GetFlag(FLAGS_coordinator), *credentials, token, info, [&service](const std::string& id) { service.set_worker_id(id); },
        [sched] {
          SchedulerLoad l = sched->load();
          v1::WorkerLoad out;
          out.set_active_requests(l.active);
          out.set_queued_requests(l.queued);
          out.set_steps(l.steps);
          out.set_generated_tokens(l.generated_tokens);
          out.set_prefill_tokens(l.prefill_tokens);
          return out;
        });
  }

  const int sig = wait_for_stop_signal();
  LOG(INFO) << "signal " << sig << ": draining";
  server->GetHealthCheckService()->SetServingStatus(false);
  if (registrar) registrar->announce_stopping();
  scheduler->drain(std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_grace_ms)));
  if (registrar) registrar->announce_exit();
  registrar.reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  metrics_server->reset();  // its collectors read the scheduler
  scheduler.reset();
  return 0;
}

}  // namespace
}  // namespace freekv

int main(int argc, char** argv) {
  freekv::block_stop_signals();  // before any thread starts; run() takes the signals
  freekv::parse_service_flags(
      argc, argv,
      "a freekv worker: loads one model, runs continuous batching with FreeKV retrieval, and serves the Worker API\n"
      "(freekv.v1.Worker, grpc.health.v1.Health, reflection) to the coordinator.\n\n"
      "  freekv-worker --kvstore /tmp/freekv-kvstore.sock --coordinator 127.0.0.1:50051 --token-file F --policy freekv\n\n"
      "Flags may be written with dashes or underscores (--kv-memory = --kv_memory); sizes accept units (4GiB).",
      {"worker/service/main.cc", freekv::kMetricsFlagFile});
  if (absl::GetFlag(FLAGS_check_config)) return freekv::check_config();
  return freekv::run();
}
