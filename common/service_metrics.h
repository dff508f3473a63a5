// Metrics glue shared by the service binaries (kvstore, worker, coordinator): the --metrics-listen flag
// and the /metrics server it starts, a gRPC interceptor counting every RPC by method and status code,
// and the process-level samples every freekv process exports.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config_check.h"
#include "common/metrics.h"
#include "common/metrics_server.h"

namespace freekv {

// The source file defining --metrics-listen, for parse_service_flags' --help list.
inline constexpr const char* kMetricsFlagFile = "common/service_metrics.cc";

// --check-config: the flag's address is host:port (or empty).
void check_metrics_listen(ConfigCheck& c);
// "metrics on http://HOST:PORT/metrics" or "no metrics endpoint", for --check-config summaries.
std::string metrics_listen_summary();

// Starts the /metrics server on --metrics-listen; nullptr when the flag is empty. Also registers the
// process samples (freekv_process_start_time_seconds, freekv_build_info{program}).
absl::StatusOr<std::unique_ptr<MetricsServer>> serve_metrics(const std::string& program, MetricsRegistry* registry);

// Counts every RPC the server answers in freekv_grpc_server_handled_total{method,code}: errors by
// status code, whichever handler produced them.
void count_rpcs(grpc::ServerBuilder* builder, MetricsRegistry* registry);

}  // namespace freekv
