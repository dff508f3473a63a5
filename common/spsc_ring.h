// A bounded single-producer/single-consumer ring of fixed-size records in shared memory.
//
// Layout at the ring's offset: RingControl (head, tail and two doorbells, each on its own cache line),
// then `capacity` slots of T. head and tail count records since creation (they never wrap; the slot
// is index % capacity). The producer owns tail, the consumer owns head.
//
// The two ends are different processes and either may be buggy: each end keeps its own index in
// process memory (the copy in shared memory is only published, never trusted back), and checks the
// peer's index. A peer index that is behind ours or more than `capacity` ahead is reported as
// kCorrupt; the caller then stops using the ring. Records are copied out before use, so a peer
// rewriting a slot later cannot change what was read.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include "common/doorbell.h"

namespace freekv {

struct RingControl {
  alignas(64) std::atomic<uint64_t> head{0};  // next record to read (consumer)
  alignas(64) std::atomic<uint64_t> tail{0};  // next record to write (producer)
  Doorbell data;                              // rung by the producer after a push
  Doorbell space;                             // rung by the consumer after a pop
};
static_assert(sizeof(RingControl) == 256);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

enum class RingResult { kOk, kEmpty, kFull, kCorrupt };

template <class T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  SpscRing() = default;

  // Bytes needed for a ring of `capacity` records (capacity a power of two).
  static constexpr uint64_t bytes(uint32_t capacity) { return sizeof(RingControl) + uint64_t(capacity) * sizeof(T); }

  // Makes a fresh ring in zeroed or reused memory (the creator does this once).
  static SpscRing create(void* mem, uint32_t capacity) {
    auto* c = new (mem) RingControl();
    return SpscRing(c, capacity, 0, 0);
  }
  // One end's view of an existing ring, starting at the indices currently published.
  static SpscRing attach(void* mem, uint32_t capacity) {
    auto* c = static_cast<RingControl*>(mem);
    return SpscRing(c, capacity, c->head.load(std::memory_order_acquire), c->tail.load(std::memory_order_acquire));
  }

  bool valid() const { return ctl_ != nullptr; }
  uint32_t capacity() const { return capacity_; }
  RingControl* control() const { return ctl_; }

  // ---- producer side ----
  RingResult try_push(const T& rec) {
    const uint64_t head = ctl_->head.load(std::memory_order_acquire);
    if (head > tail_ || tail_ - head > capacity_) return RingResult::kCorrupt;
    if (tail_ - head == capacity_) return RingResult::kFull;
    std::memcpy(static_cast<void*>(&slots_[tail_ & mask_]), &rec, sizeof(T));
    ++tail_;
    ctl_->tail.store(tail_, std::memory_order_release);
    ctl_->data.notify();
    return RingResult::kOk;
  }
  // True when a push would not find the ring full (or the ring is corrupt, which try_push reports).
  bool has_space() const {
    const uint64_t head = ctl_->head.load(std::memory_order_acquire);
    return head > tail_ || tail_ - head != capacity_;
  }

  // ---- consumer side ----
  RingResult try_pop(T* out) {
    const uint64_t tail = ctl_->tail.load(std::memory_order_acquire);
    if (tail < head_ || tail - head_ > capacity_) return RingResult::kCorrupt;
    if (tail == head_) return RingResult::kEmpty;
    std::memcpy(static_cast<void*>(out), &slots_[head_ & mask_], sizeof(T));
    ++head_;
    ctl_->head.store(head_, std::memory_order_release);
    ctl_->space.notify();
    return RingResult::kOk;
  }
  // True when a pop would not find the ring empty (or the ring is corrupt).
  bool has_data() const { return ctl_->tail.load(std::memory_order_acquire) != head_; }

 private:
  SpscRing(RingControl* c, uint32_t capacity, uint64_t head, uint64_t tail)
      : ctl_(c),
        slots_(reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(c) + sizeof(RingControl))),
        capacity_(capacity),
        mask_(uint64_t(capacity) - 1),
        head_(head),
        tail_(tail) {}

  RingControl* ctl_ = nullptr;
  T* slots_ = nullptr;
  uint32_t capacity_ = 0;
  uint64_t mask_ = 0;
  uint64_t head_ = 0;  // consumer's own copy
  uint64_t tail_ = 0;  // producer's own copy
};

}  // namespace freekv
