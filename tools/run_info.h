// What a recorded result says about where it was measured (the processor and the commit), and the
// resident memory of the processes it ran.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace freekv {

// "<cpu model name>, <n> hardware threads" from /proc/cpuinfo.
std::string machine_description();

// The source tree's git commit ("unknown" outside a checkout).
std::string git_commit();

// Resident memory of a process in bytes (VmRSS), 0 when unreadable (it exited).
int64_t resident_bytes(pid_t pid);

}  // namespace freekv
