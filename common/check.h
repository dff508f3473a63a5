// Internal invariants: a failed FREEKV_CHECK is a bug in freekv, never a consequence of user input
// (user input returns absl::Status). It prints the condition, the place and a message, then aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FREEKV_CHECK(cond, ...)                                                           \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "freekv: internal check failed: %s at %s:%d (%s)\n", #cond,    \
                   __FILE__, __LINE__, __func__);                                         \
      std::fprintf(stderr, "freekv: " __VA_ARGS__);                                       \
      std::fprintf(stderr, "\n");                                                         \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
