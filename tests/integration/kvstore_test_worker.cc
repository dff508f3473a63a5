// A test client acting as a freekv worker against a real freekv-kvstore process (integration tests).
//
//   kvstore_test_worker MODE --socket PATH --sessions a,b,c [--pages N] [--seed S] [--rounds R]
//
// MODE
//   write        create the sessions, write and commit pages [0, N) of every layer (contents are a
//                function of (session, layer, page)), append N·page_tokens token ids, then recall
//                random subsets and check every byte
//   verify       attach to the sessions (no create) and check every page (by recall and by direct
//                read) and every token id
//   recall-loop  attach, leave a few pages allocated but uncommitted, print RECALLING and recall random
//                subsets (checking them) until killed
//   exhaust      fill the pool through session "<first>-hog" until RESOURCE_EXHAUSTED, check the
//                sessions are intact and still served, then close the hog
//   bad          send malformed and out-of-range requests; each must fail with the right code, and the
//                sessions stay intact
// Prints "OK" and exits 0 on success; prints what failed and exits 1 otherwise.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "tests/integration/kvstore_test_util.h"
#include "worker/kv/kvstore_client.h"

namespace {

using freekv::KvSessionGeometry;
using freekv::KvstoreClient;
using freekv::RecallItem;
using freekv::SessionRef;
using namespace freekv::testing;

// 4 layers × 8 KV heads of 128 dims, 32-token pages, bf16: 16 KiB chunks, 128 KiB pages (DESIGN §3).
const KvSessionGeometry kGeo{4, 8, 128, 32, freekv::DType::kBF16};

#define CHECK_OK(expr)                                                                        \
  do {                                                                                        \
    absl::Status s_ = (expr);                                                                 \
    if (!s_.ok()) {                                                                           \
      std::printf("FAILED %s:%d %s: %s\n", __FILE__, __LINE__, #expr, s_.ToString().c_str()); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)
#define EXPECT(cond, ...)                                             \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::printf("FAILED %s:%d %s: ", __FILE__, __LINE__, #cond);    \
      std::printf(__VA_ARGS__);                                       \
      std::printf("\n");                                              \
      std::exit(1);                                                   \
    }                                                                 \
  } while (0)

struct Args {
  std::string mode, socket;
  std::vector<std::string> sessions;
  int64_t pages = 8;
  uint32_t seed = 1;
  int rounds = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) {
    std::fprintf(stderr, "usage: kvstore_test_worker MODE --socket PATH --sessions a,b [--pages N --seed S --rounds R]\n");
    std::exit(2);
  }
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--socket") a.socket = v;
    else if (k == "--sessions") a.sessions = absl::StrSplit(v, ',', absl::SkipEmpty());
    else if (k == "--pages") a.pages = std::atoll(v.c_str());
    else if (k == "--seed") a.seed = uint32_t(std::atoll(v.c_str()));
    else if (k == "--rounds") a.rounds = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

std::unique_ptr<KvstoreClient> connect(const Args& a) {
  KvstoreClient::Options o;
  o.worker_name = "test-worker-" + a.mode;
  o.staging_pairs = 2;
  o.staging_buffer_bytes = 256 << 10;  // 16 chunks of 16 KiB per buffer
  o.timeout_ms = 10000;
  auto c = KvstoreClient::connect(a.socket, o);
  CHECK_OK(c.status());
  return std::move(c).value();
}

SessionRef open(KvstoreClient* c, const std::string& id, bool create) {
  auto s = c->open_session(id, kGeo, create);
  CHECK_OK(s.status());
  return s->ref;
}

void write_session(KvstoreClient* c, const std::string& id, SessionRef ref, int64_t pages) {
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    for (int64_t p = 0; p < pages; p += 3) {
      const int n = int(std::min<int64_t>(3, pages - p));
      auto blocks = c->pages_for_write(ref, int(l), p, n);
      CHECK_OK(blocks.status());
      for (int i = 0; i < n; ++i) fill_page(id, int(l), p + i, (*blocks)[size_t(i)], kGeo.page_bytes());
      CHECK_OK(c->commit_pages(ref, int(l), p, n));
    }
  }
  const std::vector<int32_t> ids = session_tokens(id, pages * kGeo.page_tokens);
  CHECK_OK(c->append_tokens(ref, ids.data(), int64_t(ids.size())));
}

void recall_check(KvstoreClient* c, const std::string& id, SessionRef ref, int layer,
                  const std::vector<RecallItem>& items) {
  auto t = c->post_recall(ref, layer, items);
  CHECK_OK(t.status());
  int64_t next = 0;
  bool bad = false;
  CHECK_OK(c->wait_recall(*t, [&](int64_t i, const uint8_t* chunk) {
    if (i != next++) bad = true;
    const RecallItem& it = items[size_t(i)];
    const int64_t off = check_chunk(id, layer, it.page, it.kv_head, kGeo.chunk_bytes(), kGeo.page_bytes(), chunk);
    if (off >= 0) {
      std::printf("FAILED: session %s layer %d page %u head %u differs at byte %lld\n", id.c_str(), layer, it.page,
                  it.kv_head, (long long)off);
      std::exit(1);
    }
  }));
  EXPECT(!bad && next == int64_t(items.size()), "chunks out of order or missing (%lld of %zu)", (long long)next,
         items.size());
}

std::vector<RecallItem> random_items(std::mt19937& rng, int64_t pages) {
  std::vector<RecallItem> v(1 + rng() % 48);
  for (auto& it : v) it = RecallItem{uint32_t(rng() % kGeo.n_kv_heads), uint32_t(rng() % pages)};
  return v;
}

void verify_session(KvstoreClient* c, const std::string& id, SessionRef ref, int64_t pages) {
  for (uint32_t l = 0; l < kGeo.n_layers; ++l) {
    std::vector<RecallItem> all;
    for (int64_t p = 0; p < pages; ++p) {
      const uint8_t* page = c->committed_page(ref, int(l), p);
      EXPECT(page != nullptr, "session %s layer %u page %lld is not committed", id.c_str(), l, (long long)p);
      for (uint32_t h = 0; h < kGeo.n_kv_heads; ++h) {
        EXPECT(check_chunk(id, int(l), p, h, kGeo.chunk_bytes(), kGeo.page_bytes(), page + h * kGeo.chunk_bytes()) < 0,
               "session %s layer %u page %lld head %u differs (direct read)", id.c_str(), l, (long long)p, h);
        all.push_back(RecallItem{h, uint32_t(p)});
      }
    }
    recall_check(c, id, ref, int(l), all);
  }
  auto toks = c->tokens(ref);
  CHECK_OK(toks.status());
  EXPECT(*toks == session_tokens(id, pages * kGeo.page_tokens), "token ids of %s differ", id.c_str());
}

int run(const Args& a) {
  auto c = connect(a);
  std::mt19937 rng(a.seed);
  if (a.mode == "write") {
    std::vector<SessionRef> refs;
    for (const auto& id : a.sessions) {
      refs.push_back(open(c.get(), id, true));
      write_session(c.get(), id, refs.back(), a.pages);
    }
    for (int r = 0; r < a.rounds; ++r) {
      for (size_t i = 0; i < a.sessions.size(); ++i) {
        recall_check(c.get(), a.sessions[i], refs[i], int(rng() % kGeo.n_layers), random_items(rng, a.pages));
      }
    }
  } else if (a.mode == "verify") {
    for (const auto& id : a.sessions) verify_session(c.get(), id, open(c.get(), id, false), a.pages);
  } else if (a.mode == "recall-loop") {
    std::vector<SessionRef> refs;
    for (const auto& id : a.sessions) refs.push_back(open(c.get(), id, false));
    CHECK_OK(c->pages_for_write(refs[0], 0, a.pages + 5, 4).status());  // never committed
    bool announced = false;
    for (uint64_t n = 0;; ++n) {
      const size_t i = n % refs.size();
      // Two recalls in flight, so the kill lands while buffers are held.
      auto i0 = random_items(rng, a.pages), i1 = random_items(rng, a.pages);
      auto t0 = c->post_recall(refs[i], 0, i0);
      auto t1 = c->post_recall(refs[i], 1, i1);
      CHECK_OK(t0.status());
      CHECK_OK(t1.status());
      CHECK_OK(c->wait_recall(*t0, [&](int64_t k, const uint8_t* chunk) {
        EXPECT(check_chunk(a.sessions[i], 0, i0[size_t(k)].page, i0[size_t(k)].kv_head, kGeo.chunk_bytes(),
                           kGeo.page_bytes(), chunk) < 0,
               "recall-loop chunk differs");
      }));
      if (!announced) {
        std::printf("RECALLING\n");
        std::fflush(stdout);
        announced = true;
      }
      CHECK_OK(c->wait_recall(*t1, [](int64_t, const uint8_t*) {}));
    }
  } else if (a.mode == "exhaust") {
    std::vector<SessionRef> refs;
    for (const auto& id : a.sessions) refs.push_back(open(c.get(), id, false));
    const std::string hog = a.sessions[0] + "-hog";
    SessionRef h = open(c.get(), hog, true);
    absl::Status last;
    int64_t written = 0;
    for (int64_t p = 0;; ++p) {
      auto b = c->page_for_write(h, 0, p);
      if (!b.ok()) {
        last = b.status();
        break;
      }
      fill_page(hog, 0, p, *b, kGeo.page_bytes());
      CHECK_OK(c->commit_page(h, 0, p));
      ++written;
    }
    EXPECT(last.code() == absl::StatusCode::kResourceExhausted, "expected RESOURCE_EXHAUSTED, got %s",
           last.ToString().c_str());
    auto st = c->pool_stats();
    CHECK_OK(st.status());
    EXPECT(st->blocks_free == 0, "pool should be full, %llu blocks free", (unsigned long long)st->blocks_free);
    // Appending tokens needs a block too: refused, nothing appended.
    const auto before = c->tokens(h);
    std::vector<int32_t> ids(100000, 1);
    EXPECT(c->append_tokens(h, ids.data(), int64_t(ids.size())).code() == absl::StatusCode::kResourceExhausted,
           "token append on a full pool should be RESOURCE_EXHAUSTED");
    EXPECT(c->tokens(h)->size() == before->size(), "a refused append changed the token ids");
    for (size_t i = 0; i < refs.size(); ++i) {
      verify_session(c.get(), a.sessions[i], refs[i], a.pages);
    }
    // The hog's own pages are intact too.
    for (int64_t p = 0; p < written; p += 7) {
      recall_check(c.get(), hog, h, 0, {RecallItem{uint32_t(p % kGeo.n_kv_heads), uint32_t(p)}});
    }
    CHECK_OK(c->close_session(hog));
    st = c->pool_stats();
    CHECK_OK(st.status());
    EXPECT(st->blocks_free >= uint64_t(written), "closing the hog freed too little");
  } else if (a.mode == "bad") {
    std::vector<SessionRef> refs;
    for (const auto& id : a.sessions) refs.push_back(open(c.get(), id, false));
    const SessionRef r = refs[0];
    auto code_of = [&](const std::vector<RecallItem>& items, int layer, SessionRef ref) {
      auto t = c->post_recall(ref, layer, items);
      if (!t.ok()) return t.status().code();
      return c->wait_recall(*t, [](int64_t, const uint8_t*) {}).code();
    };
    EXPECT(code_of({{0, uint32_t(a.pages)}}, 0, r) == absl::StatusCode::kInvalidArgument, "uncommitted page");
    EXPECT(code_of({{8, 0}}, 0, r) == absl::StatusCode::kInvalidArgument, "kv_head out of range");
    EXPECT(code_of({{0, 0}}, 9, r) == absl::StatusCode::kInvalidArgument, "layer out of range");
    EXPECT(code_of({{0, 0xFFFFFFF0u}}, 0, r) == absl::StatusCode::kInvalidArgument, "page beyond the table");
    SessionRef stale = r;
    stale.generation ^= 0x5555;
    stale.slot = 1000000;
    EXPECT(c->page_for_write(stale, 0, 0).status().code() == absl::StatusCode::kNotFound, "unknown session handle");
    EXPECT(c->commit_page(r, 0, 999).code() == absl::StatusCode::kFailedPrecondition, "commit without allocation");
    EXPECT(c->open_session("no-such-session", kGeo, false).status().code() == absl::StatusCode::kNotFound,
           "unknown session id");
    KvSessionGeometry other = kGeo;
    other.head_dim = 64;
    EXPECT(c->open_session(a.sessions[0], other, true).status().code() == absl::StatusCode::kInvalidArgument,
           "geometry mismatch");
    KvSessionGeometry zero = kGeo;
    zero.n_layers = 0;
    EXPECT(c->open_session("zero", zero, true).status().code() == absl::StatusCode::kInvalidArgument, "bad geometry");
    EXPECT(c->open_session(std::string(300, 'x'), kGeo, true).status().code() == absl::StatusCode::kInvalidArgument,
           "long id");
    EXPECT(c->close_session("no-such-session").code() == absl::StatusCode::kNotFound, "close unknown");
    for (size_t i = 0; i < refs.size(); ++i) verify_session(c.get(), a.sessions[i], refs[i], a.pages);
  } else {
    std::fprintf(stderr, "unknown mode %s\n", a.mode.c_str());
    return 2;
  }
  std::printf("OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(parse(argc, argv)); }
