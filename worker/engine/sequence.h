// One sequence being generated: its KV across tiers and the retrieval that decides what it attends.
// A sequence may be bound to a kvstore session (its pages are offloaded there and survive it).
#pragma once

#include <memory>
#include <string>

#include "worker/kv/tiered_kv.h"
#include "worker/retrieval/retriever.h"

namespace freekv {

class Sequence {
 public:
  // threads score pages for selection; pool, store's client and threads must outlive the sequence.
  Sequence(KvBlockPool* pool, KvStoreBinding store, const RetrievalConfig& config, int64_t n_heads, ThreadPool* threads)
      // Only the offloading policies hold selected pages in slots; quest points at resident pages.
      : kv_(pool, store, config.offloaded() ? Retriever::selected_pages(config, pool->geometry().page_tokens) : 0,
            config.digest, config.selects()),
        retriever_(config, n_heads, &kv_, threads) {}

  TieredKv& kv() { return kv_; }
  Retriever& retriever() { return retriever_; }
  int64_t n_tokens() const { return kv_.n_tokens(); }

 private:
  TieredKv kv_;
  Retriever retriever_;
};

}  // namespace freekv
