#include "common/doorbell.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace freekv {

void Doorbell::notify() {
  // Pairs with the waiter's fetch_add on `waiters` followed by its re-check of the predicate: either
  // we see the waiter, or the waiter sees our change.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (waiters.load(std::memory_order_seq_cst) != 0) {
    seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(&seq);
  }
}

void Doorbell::futex_wait(std::atomic<uint32_t>* word, uint32_t seen, int64_t timeout_ns) {
  struct timespec ts;
  ts.tv_sec = time_t(timeout_ns / 1000000000);
  ts.tv_nsec = long(timeout_ns % 1000000000);
  // Shared (not FUTEX_PRIVATE_FLAG): the word may be mapped by another process. EAGAIN (the value
  // changed), EINTR and ETIMEDOUT all just return; the caller re-checks.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void Doorbell::futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

int64_t Doorbell::now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void Doorbell::yield() { sched_yield(); }

void Doorbell::cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace freekv
