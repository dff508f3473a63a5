// What a recorded result says about where it was measured: the processor and the commit.
#pragma once

#include <string>

namespace freekv {

// "<cpu model name>, <n> hardware threads" from /proc/cpuinfo.
std::string machine_description();

// The source tree's git commit ("unknown" outside a checkout).
std::string git_commit();

}  // namespace freekv
