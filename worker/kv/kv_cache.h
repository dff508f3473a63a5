// KV pages held by the worker for its sequences, on the CPU.
//
// A block is one (sequence, layer, page): [n_kv_heads][2 (K, V)][page_tokens][head_dim] in the KV
// dtype (DESIGN §3), so one KV head's share of a page — a chunk — is contiguous and is what the
// attention kernel reads (PagedKv) and what a recall moves. Blocks come from a pool that grows in
// slabs up to a byte limit; running out is RESOURCE_EXHAUSTED for the sequence that asked, and every
// other sequence keeps its pages. A released block's memory goes back to the operating system (its
// whole 4 KiB pages), so the worker's resident memory follows what its sequences hold, not the most
// they ever held.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/ops.h"

namespace freekv {

struct KvGeometry {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t page_tokens = 32;
  DType dtype = DType::kBF16;

  size_t chunk_bytes() const { return size_t(2 * page_tokens * head_dim) * dtype_size(dtype); }
  size_t block_bytes() const { return size_t(n_kv_heads) * chunk_bytes(); }
};

class KvBlockPool {
 public:
  KvBlockPool(const KvGeometry& geometry, uint64_t max_bytes);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  absl::StatusOr<int32_t> alloc();
  void release(int32_t block);
  uint8_t* block(int32_t id) { return slabs_[size_t(id / kBlocksPerSlab)] + size_t(id % kBlocksPerSlab) * geometry_.block_bytes(); }
  const KvGeometry& geometry() const { return geometry_; }
  // Readable from any thread (metrics scrapes); alloc() and release() belong to one thread.
  int64_t blocks_in_use() const { return in_use_.load(std::memory_order_relaxed); }
  int64_t max_blocks() const { return max_blocks_; }

 private:
  static constexpr int64_t kBlocksPerSlab = 256;
  KvGeometry geometry_;
  int64_t max_blocks_;
  std::atomic<int64_t> in_use_{0};
  std::vector<uint8_t*> slabs_;  // anonymous mappings of kBlocksPerSlab blocks
  std::vector<int32_t> free_;
};

// The page table of one sequence: blocks per layer, in logical page order.
class SequenceKv {
 public:
  explicit SequenceKv(KvBlockPool* pool);
  ~SequenceKv();
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  int64_t n_tokens() const { return n_tokens_; }
  const KvGeometry& geometry() const { return pool_->geometry(); }

  // Makes room for tokens [n_tokens, n_tokens + n) in every layer; all or nothing.
  absl::Status reserve(int64_t n);
  // Starts the table with n_pages full pages that live elsewhere (released), for a resumed session.
  void adopt_released(int64_t n_pages);
  // Records that the reserved tokens now hold K/V in every layer.
  void commit(int64_t n) { n_tokens_ += n; }

  // K and V rows of `pos` for KV head `head` in `layer` (pos < n_tokens + reserved).
  uint8_t* k_row(int64_t layer, int64_t head, int64_t pos);
  uint8_t* v_row(int64_t layer, int64_t head, int64_t pos);

  // Residency of single pages (offloaded policies keep only sinks and the window locally).
  bool resident(int64_t layer, int64_t page) const {
    const auto& pages = pages_[size_t(layer)];
    return page >= 0 && page < int64_t(pages.size()) && pages[size_t(page)] >= 0;
  }
  // Frees the page's block; the page must already be safe elsewhere (offloaded) or be dropped.
  void release(int64_t layer, int64_t page);
  // Gives a released page a block again and returns it, for the caller to fill.
  absl::StatusOr<uint8_t*> restore(int64_t layer, int64_t page);
  // The block of a resident page: [n_kv_heads][2][page_tokens][head_dim].
  uint8_t* block(int64_t layer, int64_t page) { return pool_->block(pages_[size_t(layer)][size_t(page)]); }

  // The attention kernel's view of `layer` covering the first n_tokens tokens (all resident).
  // chunk_ptrs is the caller's storage for the [n_kv_heads × n_slots] chunk pointers.
  PagedKv view(int64_t layer, int64_t n_tokens, std::vector<const void*>* chunk_ptrs);

  int64_t n_pages() const { return pages_.empty() ? 0 : int64_t(pages_[0].size()); }
  // Blocks this sequence holds (resident pages of every layer).
  int64_t blocks_held() const { return held_; }

 private:
  KvBlockPool* pool_;
  std::vector<std::vector<int32_t>> pages_;  // [layer][logical page] -> block, -1 when released
  int64_t n_tokens_ = 0;
  int64_t held_ = 0;
};

}  // namespace freekv
