#include "worker/kv/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>

#include <cerrno>
#include <cstring>

#include "common/units.h"

namespace freekv {

KvBlockPool::KvBlockPool(const KvGeometry& geometry, uint64_t max_bytes)
    : geometry_(geometry), max_blocks_(int64_t(max_bytes / geometry.block_bytes())) {}

KvBlockPool::~KvBlockPool() {
  for (uint8_t* slab : slabs_) munmap(slab, size_t(kBlocksPerSlab) * geometry_.block_bytes());
}

absl::StatusOr<int32_t> KvBlockPool::alloc() {
  if (free_.empty()) {
    const int64_t have = int64_t(slabs_.size()) * kBlocksPerSlab;
    if (have >= max_blocks_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV memory is full: ", in_use_.load(), " pages of ", format_size(geometry_.block_bytes()),
          " in use (limit ", format_size(uint64_t(max_blocks_) * geometry_.block_bytes()),
          "); raise --kv-memory or shorten the request"));
    }
    void* slab = mmap(nullptr, size_t(kBlocksPerSlab) * geometry_.block_bytes(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slab == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot map ", format_size(uint64_t(kBlocksPerSlab) * geometry_.block_bytes()),
                                                       " more of KV memory (", std::strerror(errno), ")"));
    }
    slabs_.push_back(static_cast<uint8_t*>(slab));
    const int64_t n = std::min(kBlocksPerSlab, max_blocks_ - have);
    for (int64_t i = n - 1; i >= 0; --i) free_.push_back(int32_t(have + i));
  }
  int32_t id = free_.back();
  free_.pop_back();
  ++in_use_;
  return id;
}

void KvBlockPool::release(int32_t id) {
  // The whole pages inside the block go back to the system; the next user of the block gets zero pages.
  constexpr uintptr_t kPage = 4096;
  const uintptr_t start = reinterpret_cast<uintptr_t>(block(id)), end = start + geometry_.block_bytes();
  const uintptr_t first = (start + kPage - 1) / kPage * kPage, last = end / kPage * kPage;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  free_.push_back(id);
  --in_use_;
}

SequenceKv::SequenceKv(KvBlockPool* pool) : pool_(pool), pages_(size_t(pool->geometry().n_layers)) {}

SequenceKv::~SequenceKv() {
  for (auto& layer : pages_)
    for (int32_t b : layer)
      if (b >= 0) pool_->release(b);
}

void SequenceKv::adopt_released(int64_t n_pages) {
  for (auto& layer : pages_) layer.assign(size_t(n_pages), -1);
  n_tokens_ = n_pages * pool_->geometry().page_tokens;
}

void SequenceKv::release(int64_t layer, int64_t page) {
  int32_t& b = pages_[size_t(layer)][size_t(page)];
  if (b >= 0) {
    pool_->release(b);
    --held_;
  }
  b = -1;
}

absl::StatusOr<uint8_t*> SequenceKv::restore(int64_t layer, int64_t page) {
  int32_t& b = pages_[size_t(layer)][size_t(page)];
  if (b < 0) {
    FREEKV_ASSIGN_OR_RETURN(b, pool_->alloc());
    ++held_;
  }
  return pool_->block(b);
}

absl::Status SequenceKv::reserve(int64_t n) {
  const int64_t pt = pool_->geometry().page_tokens;
  const int64_t need = (n_tokens_ + n + pt - 1) / pt;
  std::vector<int32_t> fresh;
  const int64_t per_layer = std::max<int64_t>(0, need - n_pages());
  for (int64_t i = 0; i < per_layer * int64_t(pages_.size()); ++i) {
    auto b = pool_->alloc();
    if (!b.ok()) {
      for (int32_t got : fresh) pool_->release(got);
      return b.status();
    }
    fresh.push_back(*b);
  }
  size_t next = 0;
  for (auto& layer : pages_)
    for (int64_t i = 0; i < per_layer; ++i) layer.push_back(fresh[next++]);
  held_ += int64_t(fresh.size());
  return absl::OkStatus();
}

uint8_t* SequenceKv::k_row(int64_t layer, int64_t head, int64_t pos) {
  const KvGeometry& g = pool_->geometry();
  uint8_t* block = pool_->block(pages_[size_t(layer)][size_t(pos / g.page_tokens)]);
  return block + size_t(head) * g.chunk_bytes() + size_t((pos % g.page_tokens) * g.head_dim) * dtype_size(g.dtype);
}

uint8_t* SequenceKv::v_row(int64_t layer, int64_t head, int64_t pos) {
  return k_row(layer, head, pos) + pool_->geometry().chunk_bytes() / 2;
}

PagedKv SequenceKv::view(int64_t layer, int64_t n_tokens, std::vector<const void*>* chunk_ptrs) {
  const KvGeometry& g = pool_->geometry();
  const int64_t n_slots = (n_tokens + g.page_tokens - 1) / g.page_tokens;
  chunk_ptrs->resize(size_t(g.n_kv_heads * n_slots));
  for (int64_t h = 0; h < g.n_kv_heads; ++h) {
    for (int64_t s = 0; s < n_slots; ++s) {
      (*chunk_ptrs)[size_t(h * n_slots + s)] = pool_->block(pages_[size_t(layer)][size_t(s)]) + size_t(h) * g.chunk_bytes();
    }
  }
  PagedKv kv;
  kv.chunks = chunk_ptrs->data();
  kv.n_slots = n_slots;
  kv.page_tokens = g.page_tokens;
  kv.head_dim = g.head_dim;
  kv.n_kv_heads = g.n_kv_heads;
  kv.n_tokens = n_tokens;
  kv.dtype = g.dtype;
  return kv;
}

}  // namespace freekv
