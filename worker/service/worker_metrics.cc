#include "worker/service/worker_metrics.h"

namespace freekv {
namespace {

const char* kRecalls = "Recalls of KV chunks from the kvstore: sync = waited for before attention, async = "
                       "overlapped with compute (FreeKV's speculative path).";

}  // namespace

WorkerMetrics::WorkerMetrics(MetricsRegistry* r)
    : registry_(r),
      steps_(r->counter("freekv_worker_steps_total", "Forward steps run (one batch each).")),
      step_seconds_(r->histogram("freekv_worker_step_seconds", "Wall time of one forward step.",
                                 exponential_buckets(0.001, 2, 16))),
      batch_size_(r->histogram("freekv_worker_batch_size", "Sequences stepped together, per step.",
                               {1, 2, 4, 8, 16, 32, 64, 128, 256})),
      step_rows_(r->counter("freekv_worker_step_rows_total", "Token rows computed (prefill chunks plus decodes).")),
      ttft_(r->histogram("freekv_worker_time_to_first_token_seconds",
                         "From a request's arrival at the worker (queueing included) to its first token.",
                         exponential_buckets(0.005, 2, 16))),
      itl_(r->histogram("freekv_worker_inter_token_latency_seconds",
                        "Gap between a request's successive tokens (a step sampling k tokens counts k gaps of 1/k).",
                        exponential_buckets(0.001, 2, 16))),
      prompt_tokens_(r->counter("freekv_worker_prompt_tokens_total",
                                "Prompt tokens prefilled (a resumed session's replayed tokens included).")),
      generated_tokens_(r->counter("freekv_worker_generated_tokens_total", "Tokens generated.")),
      recall_bytes_(r->counter("freekv_worker_recall_bytes_total", "Bytes of KV chunks recalled from the kvstore.")),
      recall_chunks_(r->counter("freekv_worker_recall_chunks_total", "(KV head, page) chunks recalled from the kvstore.")),
      sync_recalls_(r->counter("freekv_worker_recalls_total", kRecalls, {{"kind", "sync"}})),
      async_recalls_(r->counter("freekv_worker_recalls_total", kRecalls, {{"kind", "async"}})),
      recall_wait_seconds_(r->counter("freekv_worker_recall_wait_seconds_total",
                                      "Time the engine thread waited for recalls before attention could run.")),
      correction_checks_(r->counter("freekv_worker_correction_checks_total",
                                    "(step, KV head) pairs whose query similarity with the previous step was checked.")),
      corrections_(r->counter("freekv_worker_corrections_total",
                              "Checked pairs whose similarity fell below the correction threshold and were re-selected.")),
      selection_steps_(r->counter("freekv_worker_selection_steps_total", "Layer steps that attended a selected budget.")) {
  Gauge& rate = r->gauge("freekv_worker_correction_rate",
                         "corrections_total / correction_checks_total since the worker started (0 before any check).");
  r->on_scrape([this, &rate] {
    const double checks = correction_checks_.value();
    rate.set(checks > 0 ? corrections_.value() / checks : 0);
  });
}

void WorkerMetrics::watch(Scheduler* scheduler, Engine* engine) {
  Gauge& queued = registry_->gauge("freekv_worker_queued_requests", "Requests waiting for a batch seat.");
  Gauge& running = registry_->gauge("freekv_worker_running_requests", "Requests in the running batch.");
  Gauge& used = registry_->gauge("freekv_kv_pages", "KV pool blocks by tier and state.", {{"tier", "worker"}, {"state", "used"}});
  Gauge& capacity = registry_->gauge("freekv_kv_pages", "KV pool blocks by tier and state.", {{"tier", "worker"}, {"state", "capacity"}});
  Gauge& page_bytes = registry_->gauge("freekv_kv_page_bytes", "Bytes of one KV pool block, by tier.", {{"tier", "worker"}});
  registry_->on_scrape([=, &queued, &running, &used, &capacity, &page_bytes] {
    const SchedulerLoad load = scheduler->load();
    queued.set(load.queued);
    running.set(load.active);
    KvBlockPool& pool = engine->kv_pool();
    used.set(double(pool.blocks_in_use()));
    capacity.set(double(pool.max_blocks()));
    page_bytes.set(double(pool.geometry().block_bytes()));
  });
}

void WorkerMetrics::on_step(int sequences, int64_t rows, int64_t prefill_rows, double seconds, const RetrievalStats& recall) {
  steps_.add();
  prompt_tokens_.add(double(prefill_rows));
  step_seconds_.observe(seconds);
  batch_size_.observe(sequences);
  step_rows_.add(double(rows));
  recall_bytes_.add(double(recall.bytes_recalled));
  recall_chunks_.add(double(recall.pages_recalled));
  sync_recalls_.add(double(recall.sync_recalls));
  async_recalls_.add(double(recall.async_recalls));
  recall_wait_seconds_.add(recall.recall_wait_seconds);
  correction_checks_.add(double(recall.correction_checks));
  corrections_.add(double(recall.correction_triggers));
  selection_steps_.add(double(recall.selection_steps));
}

void WorkerMetrics::on_tokens(int64_t tokens, double seconds, bool first) {
  generated_tokens_.add(double(tokens));
  if (first) {
    ttft_.observe(seconds);
  } else {
    itl_.observe(seconds / double(tokens), uint64_t(tokens));
  }
}

void WorkerMetrics::on_finish(const absl::Status& status) {
  registry_->counter("freekv_worker_requests_total", "Generation requests ended, by status code.",
                     {{"code", absl::StatusCodeToString(status.code())}}).add();
}

}  // namespace freekv
