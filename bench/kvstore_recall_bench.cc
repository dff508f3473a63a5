// Recall throughput of freekv-kvstore's data plane (issue 3's benchmark; not a test).
//
// Runs the kvstore in-process with a real pool segment and a real worker client over the shared-memory
// channel, fills a session with pages of 16 KiB chunks (8 KV heads × 32 tokens × 128 dims, bf16), and
// measures, in the same run and interleaved round by round:
//   memcpy  — one plain memcpy of the same number of bytes, from the pool's block region to the
//             destination buffer (the bandwidth a copy of those bytes costs on this machine);
//   double  — post_recall + wait_recall of random (kv_head, page) chunks, double-buffered: the kvstore
//             gathers into one staging buffer while the worker consumes the other;
//   single  — the same with one staging buffer (gather, hand over, consume, repeat: no overlap).
// GB/s counts chunk bytes delivered per second (1e9 B/s), the same bytes for all three.
// What the worker does with each chunk while it holds the staging buffer (--consume): read every byte
// (it attends from staging: the CPU analogue of the CUDA path, where the worker's GPU takes the
// buffer by DMA), scatter it into its own slot with memcpy (a second full copy of every byte, on the
// worker's core), or nothing. By default all three run, each against its own interleaved memcpy.
// Target (issue 3): double ≥ 70% of memcpy.
//
//   kvstore_recall_bench [--items 1024] [--rounds 41] [--pool-size 1GiB] [--staging-buffer 1MiB]
//                        [--gather-threads 1] [--consume all|read|scatter|none] [--out FILE.json]
// The JSON (machine, commit, configuration, raw per-round numbers, medians, ratios) goes to --out,
// default bench/results/kvstore-recall-<host>-<date>.json in the source tree.
#include <glog/logging.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/units.h"
#include "kvstore/server.h"
#include "worker/kv/kvstore_client.h"

#ifndef FREEKV_SOURCE_DIR
#define FREEKV_SOURCE_DIR "."
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  int64_t items = 1024;  // chunks per recall (16 MiB)
  int rounds = 41;
  uint64_t pool_bytes = 1ull << 30;
  uint64_t staging_buffer = 1 << 20;
  int gather_threads = 1;
  std::string consume = "all";
  std::string out;
};

std::string sh(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  while (!out.empty() && (out.front() == ' ' || out.front() == '\t')) out.erase(out.begin());
  return out;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o + "\"";
}

std::string json_list(const std::vector<double>& v) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
  o << "]";
  return o.str();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

int usage() {
  std::printf(
      "kvstore_recall_bench: recall GB/s of the kvstore's double-buffered gather vs memcpy vs single-buffered\n"
      "  --items N            chunks (16 KiB) per recall (default 1024 = 16 MiB)\n"
      "  --rounds N           measured rounds of each variant, interleaved (default 41)\n"
      "  --pool-size SIZE     pool segment (default 1GiB; the session fills ~85%% of it)\n"
      "  --staging-buffer SIZE  each staging buffer (default 1MiB = 64 chunks)\n"
      "  --gather-threads N   kvstore copy threads per channel (default 1)\n"
      "  --consume MODE       what the worker does with each chunk while it holds the buffer:\n"
      "                       all: each of the following in turn (default)\n"
      "                       read: reads every byte (attending from staging)\n"
      "                       scatter: copies it into its budget slot (a second copy of every byte)\n"
      "                       none: nothing (the kvstore's gather and hand-over alone)\n"
      "  --out FILE           JSON output (default bench/results/kvstore-recall-<host>-<date>.json)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") return usage();
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (k == "--items") cfg.items = std::atoll(v.c_str());
    else if (k == "--rounds") cfg.rounds = std::atoi(v.c_str());
    else if (k == "--pool-size") cfg.pool_bytes = freekv::parse_size(v).value_or(0);
    else if (k == "--staging-buffer") cfg.staging_buffer = freekv::parse_size(v).value_or(0);
    else if (k == "--gather-threads") cfg.gather_threads = std::atoi(v.c_str());
    else if (k == "--consume") cfg.consume = v;
    else if (k == "--out") cfg.out = v;
    else return usage();
  }
  if (cfg.items < 1 || cfg.rounds < 1 || cfg.pool_bytes == 0 || cfg.staging_buffer == 0) return usage();
  if (cfg.consume != "scatter" && cfg.consume != "read" && cfg.consume != "none" && cfg.consume != "all") {
    return usage();
  }
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(i ? argv[i] : "kvstore_recall_bench");
  google::InitGoogleLogging(argv[0]);

  const freekv::KvSessionGeometry geo{8, 8, 128, 32, freekv::DType::kBF16};
  const uint64_t chunk = geo.chunk_bytes(), page_bytes = geo.page_bytes();
  const std::string pool_name = "kvbench-" + std::to_string(getpid());
  const std::string socket = "/tmp/" + pool_name + ".sock";
  freekv::kvstore::ServerOptions so;
  so.pool.name = pool_name;
  so.pool.pool_bytes = cfg.pool_bytes;
  so.pool.block_bytes = page_bytes;
  so.pool.max_sessions = 4;
  so.pool.mlock = true;
  so.listen = "unix:" + socket;
  so.gather_threads = cfg.gather_threads;
  so.cuda_register = false;
  so.max_worker_staging_bytes = 1ull << 30;
  auto server = freekv::kvstore::KvstoreServer::start(so);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start the kvstore: %s\n", server.status().ToString().c_str());
    return 1;
  }
  struct Cleanup {
    std::string name;
    ~Cleanup() { freekv::SharedMemory::unlink(name).IgnoreError(); }
  } cleanup{pool_name};

  freekv::KvstoreClient::Options co;
  co.worker_name = "bench";
  co.staging_pairs = 2;
  co.staging_buffer_bytes = cfg.staging_buffer;
  co.max_recall_items = uint32_t(cfg.items);
  auto client = freekv::KvstoreClient::connect(socket, co);
  if (!client.ok()) {
    std::fprintf(stderr, "cannot connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  freekv::KvstoreClient& c = **client;
  auto session = c.open_session("bench", geo, true);
  if (!session.ok()) return 1;
  const freekv::SessionRef ref = session->ref;

  // Fill ~85% of the pool with pages of layer 0 (distinct random-looking bytes).
  const int64_t n_pages = int64_t(double((*server)->pool()->block_count()) * 0.85);
  std::fprintf(stderr, "writing %lld pages of %s ...\n", (long long)n_pages, freekv::format_size(page_bytes).c_str());
  for (int64_t p = 0; p < n_pages; p += 16) {
    const int n = int(std::min<int64_t>(16, n_pages - p));
    auto blocks = c.pages_for_write(ref, 0, p, n);
    if (!blocks.ok()) {
      std::fprintf(stderr, "%s\n", blocks.status().ToString().c_str());
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      auto* w = reinterpret_cast<uint64_t*>((*blocks)[size_t(i)]);
      for (uint64_t j = 0; j < page_bytes / 8; j += 512) w[j] = uint64_t(p + i) * 1315423911u + j;  // touch every 4 KiB
      std::memset(w + 1, int((p + i) & 0xff), 64);
    }
    if (!c.commit_pages(ref, 0, p, n).ok()) return 1;
  }

  const uint64_t bytes = uint64_t(cfg.items) * chunk;
  std::vector<uint8_t> dest(bytes);
  std::memset(dest.data(), 1, dest.size());
  std::mt19937_64 rng(12345);
  auto items_for_round = [&]() {
    std::vector<freekv::RecallItem> v(size_t(cfg.items));
    for (auto& it : v) it = freekv::RecallItem{uint32_t(rng() % geo.n_kv_heads), uint32_t(rng() % uint64_t(n_pages))};
    return v;
  };
  volatile uint64_t sink = 0;
  enum class Consume { kRead, kScatter, kNone };
  auto run_recall = [&](freekv::RecallMode mode, Consume consume) -> double {
    const auto items = items_for_round();
    const auto t0 = Clock::now();
    auto t = c.post_recall(ref, 0, items, mode);
    if (!t.ok()) return -1;
    uint64_t acc = 0;
    absl::Status s = c.wait_recall(*t, [&](int64_t i, const uint8_t* p) {
      if (consume == Consume::kScatter) {
        std::memcpy(dest.data() + uint64_t(i) * chunk, p, chunk);
      } else if (consume == Consume::kRead) {
        const auto* w = reinterpret_cast<const uint64_t*>(p);
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (uint64_t k = 0; k < chunk / 8; k += 4) {
          a0 += w[k];
          a1 ^= w[k + 1];
          a2 += w[k + 2];
          a3 ^= w[k + 3];
        }
        acc += a0 + a1 + a2 + a3;
      } else {
        acc += p[0];
      }
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + acc;
    if (!s.ok()) {
      std::fprintf(stderr, "recall failed: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    return double(bytes) / sec / 1e9;
  };
  const uint8_t* pool_blocks = (*server)->pool()->block(0);
  const uint64_t span = uint64_t(n_pages) * page_bytes;
  auto run_memcpy = [&]() -> double {
    const uint64_t off = (rng() % ((span - bytes) / 4096)) * 4096;
    const auto t0 = Clock::now();
    std::memcpy(dest.data(), pool_blocks + off, bytes);
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + dest[bytes / 2];
    return double(bytes) / sec / 1e9;
  };

  struct Result {
    std::string consume;
    std::vector<double> memcpy_gbps, double_gbps, single_gbps;
    double m_memcpy = 0, m_double = 0, m_single = 0, ratio_double = 0, ratio_single = 0, rr_double = 0, rr_single = 0;
  };
  std::vector<std::string> modes;
  if (cfg.consume == "all") modes = {"read", "scatter", "none"};
  else modes = {cfg.consume};
  std::vector<Result> results;
  std::printf("recall of %lld chunks of %s (%s) per round, %d rounds, staging 2 × %s, gather threads %d\n",
              (long long)cfg.items, freekv::format_size(chunk).c_str(), freekv::format_size(bytes).c_str(), cfg.rounds,
              freekv::format_size(cfg.staging_buffer).c_str(), cfg.gather_threads);
  for (const std::string& mode : modes) {
    const Consume consume = mode == "scatter" ? Consume::kScatter : mode == "read" ? Consume::kRead : Consume::kNone;
    Result r;
    r.consume = mode;
    // Warm-up (page faults of dest and staging), then interleaved measured rounds.
    run_memcpy();
    run_recall(freekv::RecallMode::kDoubleBuffered, consume);
    run_recall(freekv::RecallMode::kSingleBuffered, consume);
    for (int i = 0; i < cfg.rounds; ++i) {
      r.memcpy_gbps.push_back(run_memcpy());
      r.double_gbps.push_back(run_recall(freekv::RecallMode::kDoubleBuffered, consume));
      r.single_gbps.push_back(run_recall(freekv::RecallMode::kSingleBuffered, consume));
    }
    r.m_memcpy = median(r.memcpy_gbps);
    r.m_double = median(r.double_gbps);
    r.m_single = median(r.single_gbps);
    r.ratio_double = r.m_double / r.m_memcpy;
    r.ratio_single = r.m_single / r.m_memcpy;
    // The machine's bandwidth drifts (shared hosts): the ratio within each round is steadier.
    std::vector<double> rd, rs;
    for (int i = 0; i < cfg.rounds; ++i) {
      rd.push_back(r.double_gbps[size_t(i)] / r.memcpy_gbps[size_t(i)]);
      rs.push_back(r.single_gbps[size_t(i)] / r.memcpy_gbps[size_t(i)]);
    }
    r.rr_double = median(rd);
    r.rr_single = median(rs);
    std::printf("consume=%s\n", mode.c_str());
    std::printf("  memcpy           %7.2f GB/s (median)\n", r.m_memcpy);
    std::printf("  double-buffered  %7.2f GB/s  = %5.1f%% of memcpy (median of per-round ratios %5.1f%%; target >= 70%%)\n",
                r.m_double, 100 * r.ratio_double, 100 * r.rr_double);
    std::printf("  single-buffered  %7.2f GB/s  = %5.1f%% of memcpy (median of per-round ratios %5.1f%%)\n",
                r.m_single, 100 * r.ratio_single, 100 * r.rr_single);
    results.push_back(std::move(r));
  }

  // JSON record.
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const std::string src = FREEKV_SOURCE_DIR;
  const std::string commit = sh("git -C '" + src + "' rev-parse HEAD 2>/dev/null");
  const bool dirty = !sh("git -C '" + src + "' status --porcelain 2>/dev/null | head -1").empty();
  const std::string cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-");
  const std::string mem = sh("grep -m1 MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'");
  struct utsname u;
  uname(&u);
  std::string out = cfg.out;
  if (out.empty()) out = src + "/bench/results/kvstore-recall-" + host + "-" + date + ".json";
  std::ostringstream j;
  j << "{\n"
    << "  \"benchmark\": \"kvstore_recall\",\n"
    << "  \"command\": " << json_str(command) << ",\n"
    << "  \"date\": " << json_str(stamp) << ",\n"
    << "  \"commit\": " << json_str(commit) << ",\n"
    << "  \"worktree_dirty\": " << (dirty ? "true" : "false") << ",\n"
    << "  \"machine\": {\"host\": " << json_str(host) << ", \"cpu\": " << json_str(cpu)
    << ", \"cores\": " << sysconf(_SC_NPROCESSORS_ONLN) << ", \"memory\": " << json_str(mem)
    << ", \"kernel\": " << json_str(std::string(u.release)) << "},\n"
    << "  \"config\": {\"chunk_bytes\": " << chunk << ", \"items_per_recall\": " << cfg.items
    << ", \"bytes_per_recall\": " << bytes << ", \"rounds\": " << cfg.rounds
    << ", \"staging_buffer_bytes\": " << cfg.staging_buffer << ", \"staging_pairs\": 2"
    << ", \"gather_threads\": " << cfg.gather_threads << ", \"pool_bytes\": " << cfg.pool_bytes
    << ", \"pages_in_pool\": " << n_pages << ", \"pool_mlocked\": " << ((*server)->pool()->mlocked() ? "true" : "false")
    << ", \"geometry\": \"8 kv_heads x 32 tokens x 128 dims bf16, 128 KiB pages\"},\n"
    << "  \"units\": \"GB/s = chunk bytes delivered / wall time / 1e9 (memcpy: bytes copied / time)\",\n"
    << "  \"consume_modes\": {\"read\": \"the worker reads every byte of each chunk in the staging buffer "
       "(attending from staging)\", \"scatter\": \"the worker memcpys each chunk into its own slot (a second copy of "
       "every byte)\", \"none\": \"the worker touches nothing (the kvstore's gather and hand-over alone)\"},\n"
    << "  \"target\": \"double_buffered >= 0.70 x memcpy\",\n"
    << "  \"runs\": [\n";
  for (size_t k = 0; k < results.size(); ++k) {
    const Result& r = results[k];
    j << "    {\"consume\": " << json_str(r.consume) << ",\n"
      << "     \"raw_gbps\": {\"memcpy\": " << json_list(r.memcpy_gbps) << ",\n"
      << "                  \"double_buffered\": " << json_list(r.double_gbps) << ",\n"
      << "                  \"single_buffered\": " << json_list(r.single_gbps) << "},\n"
      << "     \"median_gbps\": {\"memcpy\": " << r.m_memcpy << ", \"double_buffered\": " << r.m_double
      << ", \"single_buffered\": " << r.m_single << "},\n"
      << "     \"ratio_to_memcpy\": {\"double_buffered\": " << r.ratio_double << ", \"single_buffered\": "
      << r.ratio_single << "},\n"
      << "     \"median_round_ratio_to_memcpy\": {\"double_buffered\": " << r.rr_double
      << ", \"single_buffered\": " << r.rr_single << "},\n"
      << "     \"target_met\": " << (r.ratio_double >= 0.70 ? "true" : "false") << "}"
      << (k + 1 < results.size() ? "," : "") << "\n";
  }
  j << "  ]\n}\n";
  absl::Status w = freekv::write_file(out, j.str());
  if (!w.ok()) {
    std::fprintf(stderr, "cannot write %s: %s\n", out.c_str(), w.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s\n", out.c_str());
  client->reset();
  (*server)->shutdown();
  return 0;
}
