// The kvstore's Prometheus metrics, read from its pool statistics at every scrape: host-tier KV pages,
// pool use, sessions, attached workers, and recall traffic (bytes, chunks, errors, GB/s).
#pragma once

#include "common/metrics.h"
#include "kvstore/server.h"

namespace freekv::kvstore {

// Registers the collector; `server` must outlive the registry's scrapes.
void export_kvstore_metrics(KvstoreServer* server, MetricsRegistry* registry);

}  // namespace freekv::kvstore
