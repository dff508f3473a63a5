// A doorbell: lets one process sleep until another changes a value both can see in shared memory,
// without spinning forever and without missing a ring (an "event count" over a futex).
//
// Protocol: the waker first publishes its change (e.g. a ring's tail, with release order), then calls
// notify(). The waiter calls wait(pred, timeout), which returns as soon as pred() holds. notify() costs a
// fence and one load when nobody sleeps; it only enters the kernel when a waiter registered itself.
// The futex is not process-private, so the struct may live in a MAP_SHARED segment used by several
// processes. Both fields are plain 32-bit atomics: a peer that scribbles on them can cause a spurious
// wake-up or a wait until the timeout, never a hang beyond `timeout`.
#pragma once

#include <atomic>
#include <cstdint>

namespace freekv {

struct alignas(64) Doorbell {
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> waiters{0};

  // Wakes every waiter. Call after the change the waiters test for is visible.
  void notify();

  // Returns true once pred() holds, false if it still does not after timeout_ns. Spins (with pause) for
  // about spin_ns first, which keeps hand-over latency in the microseconds when the peer is quick
  // (a futex wake-up costs tens of microseconds, more on a VM).
  template <class Pred>
  bool wait(Pred&& pred, int64_t timeout_ns, int64_t spin_ns = 20000);

  // The slow half of wait(): sleeps on seq while it still equals `seen`, at most timeout_ns.
  static void futex_wait(std::atomic<uint32_t>* word, uint32_t seen, int64_t timeout_ns);
  static void futex_wake_all(std::atomic<uint32_t>* word);
  static int64_t now_ns();  // CLOCK_MONOTONIC
  static void cpu_relax();
  static void yield();
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

template <class Pred>
bool Doorbell::wait(Pred&& pred, int64_t timeout_ns, int64_t spin_ns) {
  if (pred()) return true;
  const int64_t start = now_ns();
  const int64_t deadline = start + timeout_ns;
  // Spin phase: check about every few hundred nanoseconds; yield now and then so that a spinning
  // waiter does not keep the thread it waits for off a busy core.
  for (int n = 1; now_ns() - start < spin_ns; ++n) {
    for (int i = 0; i < 32; ++i) cpu_relax();
    if (pred()) return true;
    if (n % 8 == 0) yield();
  }
  for (;;) {
    waiters.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t seen = seq.load(std::memory_order_seq_cst);
    if (pred()) {
      waiters.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
    const int64_t left = deadline - now_ns();
    if (left <= 0) {
      waiters.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    futex_wait(&seq, seen, left);
    waiters.fetch_sub(1, std::memory_order_relaxed);
    if (pred()) return true;
  }
}

}  // namespace freekv
