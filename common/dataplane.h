// The data-plane ABI between freekv-worker and freekv-kvstore: every struct that either process reads
// from shared memory is declared here, once. Change any of them (size, order, meaning) and bump
// kAbiVersion; the kvstore refuses a pool segment and a worker refuses a channel whose version differs.
//
// Two kinds of segment:
//
// 1. The pool (/dev/shm/<pool-name>), owned by the kvstore, mapped by every worker:
//      [PoolHeader, 4 KiB][SessionEntry × max_sessions][free stack: u32 × block_count][blocks]
//    Blocks are fixed-size (PoolHeader::block_bytes). A data block holds one (session, layer, page),
//    laid out [kv_head][K|V][page_tokens][head_dim] in the session's KV dtype (DESIGN §3), so the
//    chunk of one KV head is contiguous: 2·page_tokens·head_dim·dtype_size bytes at kv_head·chunk.
//    Right after the page come its key statistics, [kv_head][max, min, mad][head_dim] fp32 (mad =
//    mean |k − (max + min)/2|), from which either page digest follows: a worker resuming a session
//    reads these instead of the keys.
//    Page tables and token ids live in blocks of the same pool:
//      - index blocks: u32 entries, entry e = page·n_layers + layer lives in index block
//        SessionEntry::index_blocks[e / entries_per_block] at position e % entries_per_block; its
//        value is (data block + 1) once the page is committed, 0 otherwise;
//      - token blocks: int32 token ids, token t in token_blocks[t / tokens_per_block].
//    A slot value of 0 means "no block"; otherwise it is block + 1. A block is in use iff a live
//    session references it (as index, token or committed data block): the kvstore rebuilds its free
//    stack from that rule at every start, so blocks handed out but never committed are reclaimed.
//    Publication order makes every crash point consistent: a block is filled before the slot that
//    references it is stored (release), n_tokens is raised after the ids are written, and a session
//    becomes live (state) after its entry is complete.
//
// 2. A channel (/dev/shm/<pool-name>.ch<id>.<nonce>), one per attached worker, created by the kvstore:
//      [ChannelHeader, 4 KiB][request ring][completion ring][recall items: pairs × max_items]
//      [token arena][staging: pairs × 2 × staging_buffer_bytes]
//    Requests go worker → kvstore, completions kvstore → worker, on SPSC rings (common/spsc_ring.h).
//    Every request carries a sequence number (seq, from 1, increasing) and every completion echoes it:
//    a wait for request N is satisfied only by a completion with seq N.
//
// Recall: the worker writes the items [(kv_head, logical page)] of one recall into the item array of a
// staging pair it owns, then posts kRecall naming the pair. An item is the chunk of (kv_head, page), or
// with kRecallKeyStats that head's key statistics. The kvstore copies the chunks, in item
// order, into the pair's buffers alternately (0, 1, 0, ...; only buffer 0 with kRecallSingleBuffer) and
// hands each filled buffer over with a kRecallData completion (seq, pair, buffer, first_item, n_items;
// chunk i of the buffer is item first_item + i). The worker consumes it and gives it back with
// kRelease; the kvstore fills a buffer again only after its release, so gathering into one buffer
// overlaps the worker consuming the other. The last buffer carries kLastBuffer; a failure at any
// point ends the recall with one kError completion (what was handed over before stays valid).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/doorbell.h"
#include "common/dtype.h"
#include "common/spsc_ring.h"

namespace freekv::dp {

inline constexpr uint32_t kAbiVersion = 3;

// ------------------------------------------------------------------------------------------------
// A validated handle of an open session: its slot in the session table, the generation that slot had
// when it was opened (stale once the session is closed), and the writer epoch this open got. Each open
// of a session starts a new epoch, and writes under an older one are refused: a session has one writer,
// the worker that attached last.
struct SessionRef {
  uint32_t slot = 0;
  uint64_t generation = 0;
  uint64_t epoch = 0;
};

inline constexpr uint32_t kKeyStatRows = 3;  // max, min, mean |k − mid| per dimension

// Model geometry of a session's KV (what one page holds).
struct SessionGeometry {
  uint32_t n_layers = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t page_tokens = 32;
  DType dtype = DType::kBF16;

  // Bytes of one KV head's share of one page: [2][page_tokens][head_dim].
  uint64_t chunk_bytes() const { return 2ull * page_tokens * head_dim * dtype_size(dtype); }
  // Bytes of one (layer, page) block: [n_kv_heads][2][page_tokens][head_dim].
  uint64_t page_bytes() const { return uint64_t(n_kv_heads) * chunk_bytes(); }
  // Bytes of one KV head's key statistics: [kKeyStatRows][head_dim] fp32.
  uint64_t head_key_stats_bytes() const { return uint64_t(kKeyStatRows) * head_dim * sizeof(float); }
  // Bytes a pool block needs for one page: the page, then every head's key statistics.
  uint64_t stored_page_bytes() const { return page_bytes() + uint64_t(n_kv_heads) * head_key_stats_bytes(); }
  bool operator==(const SessionGeometry&) const = default;
};

// ------------------------------------------------------------------------------------------------
// Pool segment.
inline constexpr char kPoolMagic[8] = {'F', 'R', 'K', 'V', 'P', 'O', 'O', 'L'};
inline constexpr uint32_t kEndianCheck = 0x01020304u;
inline constexpr uint64_t kPoolHeaderBytes = 4096;
inline constexpr uint32_t kSessionIdMax = 127;  // bytes of a session id
inline constexpr uint32_t kIndexSlots = 2048;   // index blocks per session
inline constexpr uint32_t kTokenSlots = 512;    // token blocks per session

struct PoolHeader {
  char magic[8];
  uint32_t abi_version;
  uint32_t endian_check;
  std::atomic<uint32_t> ready;  // 1 once the segment is fully initialised
  uint32_t max_sessions;
  uint64_t segment_bytes;
  uint64_t block_bytes;
  uint64_t block_count;
  uint32_t session_entry_bytes;  // sizeof(SessionEntry)
  uint32_t index_slots;          // kIndexSlots
  uint32_t token_slots;          // kTokenSlots
  uint32_t reserved0;
  uint64_t session_table_offset;
  uint64_t free_list_offset;
  uint64_t blocks_offset;
  uint64_t created_unix_ns;
  std::atomic<uint64_t> next_generation;  // session generations, never reused
  std::atomic<uint64_t> free_top;         // entries on the free stack (the kvstore's bookkeeping)
  std::atomic<uint64_t> starts;           // how many times a kvstore attached to this segment
};
static_assert(sizeof(PoolHeader) <= kPoolHeaderBytes);

enum SessionState : uint32_t { kSessionFree = 0, kSessionLive = 1 };

struct alignas(64) SessionEntry {
  std::atomic<uint32_t> state;  // SessionState; published last on creation, cleared first on close
  uint32_t id_len;
  char id[kSessionIdMax + 1];
  uint32_t n_layers, n_kv_heads, head_dim, page_tokens;
  uint32_t dtype;  // freekv::DType
  uint32_t ephemeral;   // 1: belongs to one worker attachment, closed when it ends or the kvstore restarts
  uint64_t generation;  // distinguishes successive sessions in the same slot
  std::atomic<uint64_t> epoch;  // the writer's epoch: 1 at creation, one more at every later open
  uint64_t created_unix_ns;
  std::atomic<uint64_t> last_use_unix_ns;
  std::atomic<uint64_t> n_tokens;
  std::atomic<uint32_t> index_blocks[kIndexSlots];
  std::atomic<uint32_t> token_blocks[kTokenSlots];

  SessionGeometry geometry() const {
    return SessionGeometry{n_layers, n_kv_heads, head_dim, page_tokens, DType(dtype)};
  }
};

inline uint64_t entries_per_index_block(uint64_t block_bytes) { return block_bytes / sizeof(uint32_t); }
inline uint64_t tokens_per_block(uint64_t block_bytes) { return block_bytes / sizeof(int32_t); }
// Pages per layer a session can hold: its index blocks cover kIndexSlots·entries entries.
inline uint64_t max_pages_per_layer(uint64_t block_bytes, uint32_t n_layers) {
  return n_layers == 0 ? 0 : uint64_t(kIndexSlots) * entries_per_index_block(block_bytes) / n_layers;
}
inline uint64_t max_tokens(uint64_t block_bytes) { return uint64_t(kTokenSlots) * tokens_per_block(block_bytes); }

// ------------------------------------------------------------------------------------------------
// Channel segment.
inline constexpr char kChannelMagic[8] = {'F', 'R', 'K', 'V', 'C', 'H', 'A', 'N'};
inline constexpr uint64_t kChannelHeaderBytes = 4096;
inline constexpr uint32_t kMaxAllocPages = 16;  // pages one kAlloc/kCommit may name

enum ChannelState : uint32_t { kChannelServing = 1, kChannelClosed = 2, kChannelBroken = 3 };

struct ChannelHeader {
  char magic[8];
  uint32_t abi_version;
  uint32_t worker_id;
  uint64_t channel_bytes;
  uint32_t request_capacity;     // records (power of two)
  uint32_t completion_capacity;  // records (power of two)
  uint32_t staging_pairs;
  uint32_t max_recall_items;  // per recall (per pair)
  uint64_t staging_buffer_bytes;
  uint64_t token_arena_bytes;
  uint64_t request_ring_offset;
  uint64_t completion_ring_offset;
  uint64_t items_offset;        // RecallItem[staging_pairs][max_recall_items]
  uint64_t token_arena_offset;  // int32 ids of one kAppendTokens
  uint64_t staging_offset;      // [staging_pairs][2][staging_buffer_bytes], 4 KiB aligned
  std::atomic<uint32_t> state;  // ChannelState; the kvstore sets kChannelClosed / kChannelBroken and rings
                                // the completion ring's data doorbell
  uint32_t reserved0;
};
static_assert(sizeof(ChannelHeader) <= kChannelHeaderBytes);

enum class Op : uint32_t {
  kAlloc = 1,         // blocks for pages [first_page, first_page + count) of (session, layer); count ≤ kMaxAllocPages
  kCommit = 2,        // those pages are written: publish them in the page table (durable from here on)
  kDiscard = 3,       // give back allocated, uncommitted pages
  kAppendTokens = 4,  // append `count` ids from the token arena to the session's token ids
  kRecall = 5,        // copy `count` items of staging pair `pair` (see above); flags: kRecallSingleBuffer,
                      // kRecallKeyStats
  kRelease = 6,       // buffer `flags` of pair `pair` was consumed (ticket = the recall's seq); no completion
  kTruncate = 7,      // keep the session's first `first` token ids and the pages they fill completely
                      // (every layer); later ids, pages and pending blocks of those pages are freed
};

inline constexpr uint32_t kRecallSingleBuffer = 1;  // use buffer 0 only (the benchmark's baseline)
inline constexpr uint32_t kRecallKeyStats = 2;      // items are heads' key statistics, not chunks

struct alignas(64) Request {
  uint64_t seq;
  uint32_t op;  // Op
  uint32_t session_slot;
  uint64_t session_generation;
  uint64_t session_epoch;  // the writer epoch of the request's SessionRef
  int32_t layer;
  uint32_t pair;
  int64_t first;  // first page (alloc, commit, discard); token ids kept (truncate)
  uint32_t count;
  uint32_t flags;
  uint64_t ticket;
};
static_assert(sizeof(Request) == 64);

enum class CompletionKind : uint32_t {
  kDone = 1,        // the request succeeded (kAlloc: block_offsets[0..n_blocks) are valid)
  kError = 2,       // the request failed: code (absl::StatusCode) and message
  kRecallData = 3,  // a staging buffer is handed to the worker
};

inline constexpr uint32_t kLastBuffer = 1;
inline constexpr uint32_t kMessageBytes = 200;

struct alignas(64) Completion {
  uint64_t seq;
  uint32_t kind;  // CompletionKind
  int32_t code;   // absl::StatusCode for kError, 0 otherwise
  uint32_t pair;
  uint32_t buffer;
  uint32_t first_item;
  uint32_t n_items;
  uint32_t flags;  // kLastBuffer
  uint32_t n_blocks;
  uint64_t block_offsets[kMaxAllocPages];  // kAlloc: byte offset of each page's block in the pool segment
  char message[kMessageBytes];             // kError: NUL-terminated reason
};
static_assert(sizeof(Completion) == 384);

struct RecallItem {
  uint32_t kv_head;
  uint32_t page;  // logical page of the recall's layer
};
static_assert(sizeof(RecallItem) == 8);

using RequestRing = SpscRing<Request>;
using CompletionRing = SpscRing<Completion>;

}  // namespace freekv::dp
