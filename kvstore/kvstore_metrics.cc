#include "kvstore/kvstore_metrics.h"

namespace freekv::kvstore {

void export_kvstore_metrics(KvstoreServer* server, MetricsRegistry* r) {
  // Pages of the host tier; the worker exports tier="worker" under the same name, so a dashboard can
  // sum or stack them by tier.
  Gauge& pages_used = r->gauge("freekv_kv_pages", "KV pool blocks by tier and state.", {{"tier", "host"}, {"state", "used"}});
  Gauge& pages_total = r->gauge("freekv_kv_pages", "KV pool blocks by tier and state.", {{"tier", "host"}, {"state", "capacity"}});
  const char* kBlocks = "Host pool blocks by use: data (committed pages), metadata (index and token ids), pending "
                        "(handed to a worker, not committed), free.";
  Gauge& data = r->gauge("freekv_kvstore_blocks", kBlocks, {{"use", "data"}});
  Gauge& metadata = r->gauge("freekv_kvstore_blocks", kBlocks, {{"use", "metadata"}});
  Gauge& pending = r->gauge("freekv_kvstore_blocks", kBlocks, {{"use", "pending"}});
  Gauge& free = r->gauge("freekv_kvstore_blocks", kBlocks, {{"use", "free"}});
  Gauge& pool_bytes = r->gauge("freekv_kvstore_pool_bytes", "Size of the pool segment in bytes.");
  Gauge& used_bytes = r->gauge("freekv_kvstore_pool_used_bytes", "Bytes of the pool in used blocks.");
  Gauge& mlocked = r->gauge("freekv_kvstore_pool_mlocked", "1 when the pool is locked in memory.");
  Gauge& sessions = r->gauge("freekv_kvstore_sessions", "Sessions stored in the pool.");
  Gauge& max_sessions = r->gauge("freekv_kvstore_max_sessions", "Session slots of the pool.");
  Gauge& workers = r->gauge("freekv_kvstore_workers", "Workers attached through a data-plane channel.");
  // Totals the server keeps: counters advanced to the server's value at each scrape (rate() works).
  Counter& bytes = r->counter("freekv_kvstore_recall_bytes_total", "Bytes of KV chunks gathered for workers' recalls.");
  Counter& chunks = r->counter("freekv_kvstore_recall_chunks_total", "(KV head, page) chunks gathered for recalls.");
  Counter& recalls = r->counter("freekv_kvstore_recalls_total", "Recall requests served.");
  Counter& errors = r->counter("freekv_kvstore_recall_errors_total", "Recall requests refused or failed.");
  const char* kGbps = "Recall throughput over the last minute in 1e9 bytes/s: wall = bytes / 60 s, busy = bytes / "
                      "time spent gathering them.";
  Gauge& gbps_wall = r->gauge("freekv_kvstore_recall_gbps", kGbps, {{"window", "1m"}, {"over", "wall"}});
  Gauge& gbps_busy = r->gauge("freekv_kvstore_recall_gbps", kGbps, {{"window", "1m"}, {"over", "busy"}});
  r->on_scrape([=, &pages_used, &pages_total, &data, &metadata, &pending, &free, &pool_bytes, &used_bytes, &mlocked,
                &sessions, &max_sessions, &workers, &bytes, &chunks, &recalls, &errors, &gbps_wall, &gbps_busy] {
    const v1::PoolStats s = server->pool_stats();
    pages_used.set(double(s.blocks_used()));
    pages_total.set(double(s.blocks_total()));
    data.set(double(s.blocks_data()));
    metadata.set(double(s.blocks_metadata()));
    pending.set(double(s.blocks_pending()));
    free.set(double(s.blocks_free()));
    pool_bytes.set(double(s.pool_bytes()));
    used_bytes.set(double(s.blocks_used() * s.block_bytes()));
    mlocked.set(s.mlocked() ? 1 : 0);
    sessions.set(s.sessions());
    max_sessions.set(s.max_sessions());
    workers.set(s.workers());
    bytes.advance_to(double(s.bytes_recalled_total()));
    chunks.advance_to(double(s.chunks_recalled_total()));
    recalls.advance_to(double(s.recalls_total()));
    errors.advance_to(double(s.recall_errors_total()));
    gbps_wall.set(s.recall_gbps_last_minute());
    gbps_busy.set(s.recall_busy_gbps_last_minute());
  });
}

}  // namespace freekv::kvstore
