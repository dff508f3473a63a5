// Prometheus metrics: the text format of counters, gauges and histograms; the /metrics HTTP server's
// answers to good, bad and silent clients; RPC counting by status code through a real gRPC server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/service_metrics.h"
#include "freekv/v1/kvstore.grpc.pb.h"

namespace freekv {
namespace {

TEST(MetricsRegistry, RendersCountersGaugesAndLabelsInTextFormat) {
  MetricsRegistry r;
  r.counter("freekv_requests_total", "Requests.", {{"code", "OK"}}).add(3);
  r.counter("freekv_requests_total", "Requests.", {{"code", "NOT_FOUND"}}).add();
  r.counter("freekv_requests_total", "Requests.", {{"code", "OK"}}).add(2);  // same label set: same counter
  r.gauge("freekv_pages", "Pages\nin use \\ here.", {{"tier", "a\"b"}}).set(1.5);
  const std::string text = r.render();
  EXPECT_NE(text.find("# HELP freekv_requests_total Requests.\n# TYPE freekv_requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_requests_total{code=\"OK\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_requests_total{code=\"NOT_FOUND\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP freekv_pages Pages\\nin use \\\\ here.\n# TYPE freekv_pages gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_pages{tier=\"a\\\"b\"} 1.5\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry r;
  Histogram& h = r.histogram("freekv_latency_seconds", "Latency.", {0.01, 0.1, 1}, {{"stage", "decode"}});
  h.observe(0.005);
  h.observe(0.01);      // on a bound: counted in that bucket (le = less or equal)
  h.observe(0.05, 3);   // three observations at once
  h.observe(7);
  const std::string text = r.render();
  EXPECT_NE(text.find("freekv_latency_seconds_bucket{stage=\"decode\",le=\"0.01\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_latency_seconds_bucket{stage=\"decode\",le=\"0.1\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_latency_seconds_bucket{stage=\"decode\",le=\"1\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_latency_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_latency_seconds_count{stage=\"decode\"} 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freekv_latency_seconds_sum{stage=\"decode\"} 7.16"), std::string::npos) << text;
  EXPECT_NEAR(h.sum(), 0.005 + 0.01 + 3 * 0.05 + 7, 1e-12);
}

TEST(MetricsRegistry, CollectorsRunBeforeEachRender) {
  MetricsRegistry r;
  int scrapes = 0;
  Gauge& g = r.gauge("freekv_scrapes", "Scrapes so far.");
  r.on_scrape([&] { g.set(++scrapes); });
  r.render();
  EXPECT_NE(r.render().find("freekv_scrapes 2\n"), std::string::npos);
}

TEST(MetricsRegistry, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry r;
  Counter& c = r.counter("freekv_n_total", "n");
  Histogram& h = r.histogram("freekv_h", "h", {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.add();
        h.observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 40000);
  EXPECT_EQ(h.cumulative_count(1), 40000u);
  EXPECT_DOUBLE_EQ(h.sum(), 20000);
}

TEST(MetricsRegistry, ExponentialBuckets) {
  EXPECT_EQ(exponential_buckets(0.001, 2, 4), (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
}

// ---- the HTTP server ----

int connect_to(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// Sends `request` and returns everything the server answers before closing.
std::string exchange(int port, const std::string& request) {
  const int fd = connect_to(port);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), ssize_t(request.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, size_t(n));
  close(fd);
  return out;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.counter("freekv_tokens_total", "Tokens.").add(42);
    auto s = MetricsServer::start("127.0.0.1:0", &registry_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_GT(server_->port(), 0);
  }
  MetricsRegistry registry_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, GetMetricsAnswersTheTextFormat) {
  const std::string out = exchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << out;
  const std::string body = out.substr(out.find("\r\n\r\n") + 4);
  EXPECT_EQ(body, registry_.render());
  EXPECT_NE(out.find("Content-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos) << out;
  EXPECT_NE(body.find("freekv_tokens_total 42\n"), std::string::npos);
  // A query string (Prometheus may add one) is ignored; HEAD gets the headers only.
  EXPECT_EQ(exchange(server_->port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 200 OK", 0), 0u);
  const std::string head = exchange(server_->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "");
}

TEST_F(MetricsServerTest, BadRequestsGetErrorsAndTheServerKeepsServing) {
  EXPECT_EQ(exchange(server_->port(), "GET /nope HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  const std::string post = exchange(server_->port(), "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD"), std::string::npos);
  EXPECT_EQ(exchange(server_->port(), "hello\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(exchange(server_->port(), "GET /metrics HTTP/1.1\r\n" + std::string(9000, 'a')).rfind("HTTP/1.1 431", 0), 0u);
  EXPECT_EQ(exchange(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(MetricsServerTest, ASilentClientDelaysTheNextScrapeByAtMostTheTimeout) {
  const int silent = connect_to(server_->port());  // connects, never sends
  const auto start = std::chrono::steady_clock::now();
  const std::string out = exchange(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_LT(waited, 5.0);
  close(silent);
}

TEST_F(MetricsServerTest, APortInUseIsAClearError) {
  auto second = MetricsServer::start("127.0.0.1:" + std::to_string(server_->port()), &registry_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("--metrics-listen"), std::string::npos) << second.status();
  EXPECT_FALSE(MetricsServer::start("no-port-here", &registry_).ok());
  EXPECT_FALSE(MetricsServer::start("127.0.0.1:99999", &registry_).ok());
  EXPECT_FALSE(MetricsServer::start("127.0.0.1:http", &registry_).ok());
}

// ---- RPCs counted by method and status code ----

class FailingKvStore final : public v1::KvStore::Service {
  grpc::Status GetPoolStats(grpc::ServerContext*, const v1::GetPoolStatsRequest*, v1::GetPoolStatsResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status GetSession(grpc::ServerContext*, const v1::GetSessionRequest*, v1::GetSessionResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such session");
  }
};

TEST(RpcMetrics, EveryAnsweredRpcIsCountedByMethodAndCode) {
  MetricsRegistry registry;
  FailingKvStore service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  count_rpcs(&builder, &registry);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::KvStore::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::GetSessionResponse resp;
    EXPECT_EQ(stub->GetSession(&ctx, v1::GetSessionRequest(), &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  grpc::ClientContext ctx;
  v1::GetPoolStatsResponse stats;
  EXPECT_TRUE(stub->GetPoolStats(&ctx, v1::GetPoolStatsRequest(), &stats).ok());
  const std::string text = registry.render();
  EXPECT_NE(text.find("freekv_grpc_server_handled_total{method=\"/freekv.v1.KvStore/GetSession\",code=\"NOT_FOUND\"} 2\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("freekv_grpc_server_handled_total{method=\"/freekv.v1.KvStore/GetPoolStats\",code=\"OK\"} 1\n"),
            std::string::npos) << text;
  server->Shutdown();
}

}  // namespace
}  // namespace freekv
