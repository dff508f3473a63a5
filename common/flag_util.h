// Process set-up shared by the service binaries (kvstore, worker, coordinator).
// Abseil flags: flags may be written with dashes (--kv-memory) as the docs spell them, although Abseil
// names them with underscores; --help lists the binary's own flags. Logging goes to stderr.
// Stop signals: SIGINT and SIGTERM are blocked in every thread and taken by the main thread with
// wait_for_stop_signal(), so a shutdown runs as ordinary code rather than in a signal handler.
#pragma once

#include <string>
#include <vector>

namespace freekv {

// Parses argv with Abseil (exits on --help or a bad flag) and sends logging to stderr. `flag_files`
// name the files that define the binary's flags (e.g. "worker/service/main.cc") so --help shows them.
void parse_service_flags(int argc, char** argv, const std::string& usage, const std::vector<std::string>& flag_files);

// Blocks SIGINT and SIGTERM (call before any thread starts: threads inherit the mask) and ignores
// SIGPIPE (a peer that hangs up is an error on that call, not the end of the process).
void block_stop_signals();
// Waits for SIGINT or SIGTERM and returns which.
int wait_for_stop_signal();

}  // namespace freekv
