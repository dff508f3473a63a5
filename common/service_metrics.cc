#include "common/service_metrics.h"

#include <grpcpp/support/server_interceptor.h>

#include <chrono>

#include "absl/flags/flag.h"
#include "absl/status/status.h"

ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics (text format, GET /metrics) on this host:port; empty = no metrics endpoint. "
          "Each process needs its own port.");

namespace freekv {
namespace {

namespace gx = grpc::experimental;

class RpcCounter final : public gx::Interceptor {
 public:
  RpcCounter(gx::ServerRpcInfo* info, MetricsRegistry* registry) : method_(info->method()), registry_(registry) {}

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status s = methods->GetSendStatus();
      // gRPC's and Abseil's status codes share their numbers and names.
      const std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()));
      registry_->counter("freekv_grpc_server_handled_total", "RPCs answered, by method and status code.",
                         {{"method", method_}, {"code", code}}).add();
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  MetricsRegistry* registry_;
};

class RpcCounterFactory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit RpcCounterFactory(MetricsRegistry* registry) : registry_(registry) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override { return new RpcCounter(info, registry_); }

 private:
  MetricsRegistry* registry_;
};

}  // namespace

void check_metrics_listen(ConfigCheck& c) {
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!listen.empty()) c.host_port("metrics-listen", listen);
}

std::string metrics_listen_summary() {
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  return listen.empty() ? "no metrics endpoint" : "metrics on http://" + listen + "/metrics";
}

absl::StatusOr<std::unique_ptr<MetricsServer>> serve_metrics(const std::string& program, MetricsRegistry* registry) {
  const double start = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  registry->gauge("freekv_process_start_time_seconds", "Unix time the process started.").set(start);
  registry->gauge("freekv_build_info", "Always 1; labels name the program.", {{"program", program}}).set(1);
  const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
  if (listen.empty()) return nullptr;
  return MetricsServer::start(listen, registry);
}

void count_rpcs(grpc::ServerBuilder* builder, MetricsRegistry* registry) {
  std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<RpcCounterFactory>(registry));
  builder->experimental().SetInterceptorCreators(std::move(factories));
}

}  // namespace freekv
