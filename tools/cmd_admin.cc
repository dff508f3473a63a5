// `freekv admin workers|sessions|session ID|pool|drain ID`: the coordinator's Admin API, with the bearer
// token read from a file. Tables for people, --json (the API's messages) for scripts.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/grpc_util.h"
#include "common/tls.h"
#include "common/units.h"
#include "freekv/v1/admin.grpc.pb.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

namespace freekv {
namespace {

// The response as indented JSON for --json, newline-terminated.
std::string to_json(const google::protobuf::Message& m) { return proto_to_json(m, true) + "\n"; }

int report_grpc(const grpc::Status& s) {
  std::fprintf(stderr, "freekv admin: %s: %s\n",
               absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(), s.error_message().c_str());
  return 1;
}

std::string size(uint64_t bytes) { return format_size(bytes); }

void print_workers(const v1::ListWorkersResponse& r) {
  std::printf("%-6s %-22s %-9s %-8s %6s %6s %9s %10s %9s  %s\n", "id", "address", "state", "policy", "active", "queued",
              "sessions", "generated", "heartbeat", "kvstore");
  for (const auto& w : r.workers()) {
    std::printf("%-6s %-22s %-9s %-8s %6d %6d %9lld %10lld %8.1fs  %s\n", w.worker_id().c_str(), w.address().c_str(),
                w.state().c_str(), w.policy().c_str(), w.active_requests(), w.queued_requests(), (long long)w.sessions(),
                (long long)w.generated_tokens(), w.heartbeat_age_seconds(), w.kvstore_id().c_str());
  }
}

void print_sessions(const v1::AdminListSessionsResponse& r) {
  std::printf("%-24s %8s %6s %-6s %-10s %12s\n", "session", "tokens", "turns", "worker", "state", "host KV");
  for (const auto& s : r.sessions()) {
    std::printf("%-24s %8llu %6lld %-6s %-10s %12s\n", s.session_id().c_str(), (unsigned long long)s.tokens(),
                (long long)s.turns(), s.worker_id().c_str(), s.generating() ? "generating" : "idle", size(s.host_bytes()).c_str());
  }
}

void print_session(const v1::SessionDetail& d) {
  const v1::SessionSummary& s = d.summary();
  const v1::SessionKvOccupancy& o = d.occupancy();
  std::printf("session %s: %llu tokens, %lld turns, %s, worker %s, kvstore %s\n", s.session_id().c_str(),
              (unsigned long long)s.tokens(), (long long)s.turns(), s.generating() ? "generating" : "idle",
              s.worker_id().c_str(), s.kvstore_id().c_str());
  std::printf("KV occupancy (a page = one layer's %s for all KV heads):\n", size(o.page_bytes()).c_str());
  std::printf("  %-6s %10s %12s %12s %12s %15s %14s\n", "layer", "host pages", "host bytes", "worker pages", "worker bytes",
              "selected chunks", "selected bytes");
  for (const auto& l : o.layers()) {
    std::printf("  %-6u %10llu %12s %12llu %12s %15llu %14s\n", l.layer(), (unsigned long long)l.host_pages(),
                size(l.host_bytes()).c_str(), (unsigned long long)l.worker_pages(), size(l.worker_bytes()).c_str(),
                (unsigned long long)l.selected_chunks(), size(l.selected_bytes()).c_str());
  }
  std::printf("  %-6s %10llu %12s %12llu %12s %15llu %14s\n", "total", (unsigned long long)o.host_pages(),
              size(o.host_bytes()).c_str(), (unsigned long long)o.worker_pages(), size(o.worker_bytes()).c_str(),
              (unsigned long long)o.selected_chunks(), size(o.selected_bytes()).c_str());
  if (s.generating()) {
    std::printf("  worker KV memory held: %s now, %s at most; page digests %s\n", size(o.worker_kv_bytes()).c_str(),
                size(o.worker_kv_peak_bytes()).c_str(), size(o.digest_bytes()).c_str());
  } else {
    std::printf("  (worker pages are held only while a turn runs; between turns the KV lives in the kvstore)\n");
  }
  const v1::RetrievalStats& r = d.retrieval();
  std::printf("turns: %lld prompt tokens, %lld reused from the session's KV, %lld generated\n", (long long)d.prompt_tokens(),
              (long long)d.reused_tokens(), (long long)d.generated_tokens());
  std::printf("retrieval (%s): %lld chunks recalled (%s), correction rate %.3f (%lld of %lld checks), %.3f s waiting on recalls\n",
              r.policy().empty() ? "no turn yet" : r.policy().c_str(), (long long)r.pages_recalled(),
              size(uint64_t(r.bytes_recalled())).c_str(), r.correction_rate(), (long long)r.correction_triggers(),
              (long long)r.correction_checks(), r.recall_wait_seconds());
}

void print_pool(const v1::AdminGetPoolStatsResponse& r) {
  for (const auto& k : r.kvstores()) {
    const v1::PoolStats& p = k.stats();
    std::string workers;
    for (const auto& w : k.worker_ids()) workers += (workers.empty() ? "" : ",") + w;
    std::printf("kvstore %s (workers %s): pool %s, blocks %llu used / %llu total (%llu data, %llu metadata, %llu pending), "
                "%u sessions, %s recalled, %.2f GB/s over the last minute\n",
                k.kvstore_id().c_str(), workers.c_str(), size(p.pool_bytes()).c_str(), (unsigned long long)p.blocks_used(),
                (unsigned long long)p.blocks_total(), (unsigned long long)p.blocks_data(),
                (unsigned long long)p.blocks_metadata(), (unsigned long long)p.blocks_pending(), p.sessions(),
                size(p.bytes_recalled_total()).c_str(), p.recall_gbps_last_minute());
  }
  for (const auto& w : r.workers()) {
    std::printf("worker %s: local KV blocks %lld in use / %lld max (%s each)\n", w.worker_id().c_str(),
                (long long)w.blocks_in_use(), (long long)w.max_blocks(), size(w.block_bytes()).c_str());
  }
}

std::string default_token_file() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.freekv/admin-token";
}

}  // namespace

int cmd_admin(int argc, char** argv) {
  const char* usage =
      "freekv admin (workers | sessions | session ID | pool | drain WORKER) [--coordinator ADDR] [--token-file F] [--json]";
  std::string what = argc >= 2 ? argv[1] : "", id;
  int first_option = 2;
  if ((what == "session" || what == "drain") && argc >= 3 && std::strncmp(argv[2], "--", 2) != 0) {
    id = argv[2];
    first_option = 3;
  }
  std::string coordinator = "127.0.0.1:50051", token_file = default_token_file(), tls_ca_file;
  bool json = false;
  ArgParser p(usage, "Asks a coordinator's Admin API about its workers, sessions (KV occupancy per tier) and pools.");
  p.add_string("coordinator", &coordinator, "coordinator address host:port");
  p.add_string("token-file", &token_file, "file with the admin bearer token (the coordinator's --admin-token-file)");
  p.add_string("tls-ca-file", &tls_ca_file,
               "PEM certificates to verify a coordinator serving TLS with (its certificate, or the CA that signed it)");
  p.add_bool("json", &json, "print the API's response as JSON");
  std::vector<char*> rest = {argv[0]};
  for (int i = first_option; i < argc; ++i) rest.push_back(argv[i]);
  if (what == "--help" || what == "-h") rest.push_back(argv[1]);
  if (int rc = handle_parse_result(p, p.parse(int(rest.size()), rest.data())); rc >= 0) return rc;
  const bool known = what == "workers" || what == "sessions" || what == "pool" || ((what == "session" || what == "drain") && !id.empty());
  if (!known) {
    std::fprintf(stderr, "usage: %s\n(see --help)\n", usage);
    return 2;
  }
  auto token = read_token_file(token_file);
  if (!token.ok()) return report_error("admin", token.status());
  auto credentials = channel_credentials(tls_ca_file);
  if (!credentials.ok()) return report_error("admin", credentials.status());
  auto stub = v1::Admin::NewStub(make_channel(coordinator, *credentials));
  grpc::ClientContext ctx;
  add_bearer(&ctx, *token);
  ctx.set_deadline(deadline_in(15000));
  grpc::Status s;
  if (what == "workers") {
    v1::ListWorkersResponse r;
    s = stub->ListWorkers(&ctx, v1::ListWorkersRequest(), &r);
    if (s.ok()) json ? (void)(std::cout << to_json(r)) : print_workers(r);
  } else if (what == "sessions") {
    v1::AdminListSessionsResponse r;
    s = stub->ListSessions(&ctx, v1::AdminListSessionsRequest(), &r);
    if (s.ok()) json ? (void)(std::cout << to_json(r)) : print_sessions(r);
  } else if (what == "session") {
    v1::AdminGetSessionRequest req;
    req.set_session_id(id);
    v1::AdminGetSessionResponse r;
    s = stub->GetSession(&ctx, req, &r);
    if (s.ok()) json ? (void)(std::cout << to_json(r)) : print_session(r.session());
  } else if (what == "pool") {
    v1::AdminGetPoolStatsResponse r;
    s = stub->GetPoolStats(&ctx, v1::AdminGetPoolStatsRequest(), &r);
    if (s.ok()) json ? (void)(std::cout << to_json(r)) : print_pool(r);
  } else {
    v1::DrainWorkerRequest req;
    req.set_worker_id(id);
    v1::DrainWorkerResponse r;
    s = stub->DrainWorker(&ctx, req, &r);
    if (s.ok()) {
      if (json) {
        std::cout << to_json(r);
      } else {
        std::printf("worker %s is %s: it gets no new requests; its sessions continue on other workers of kvstore %s\n",
                    r.worker().worker_id().c_str(), r.worker().state().c_str(), r.worker().kvstore_id().c_str());
      }
    }
  }
  if (!s.ok()) return report_grpc(s);
  return 0;
}

}  // namespace freekv
