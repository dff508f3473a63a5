// Abseil flags for the service binaries: flags may be written with dashes (--kv-memory) as the
// docs spell them, although Abseil names them with underscores; --help lists the binary's own flags.
#pragma once

#include <string>
#include <vector>

namespace freekv {

// Parses argv with Abseil (exits on --help or a bad flag). `main_file_suffix` names the file that
// defines the binary's flags (e.g. "worker/service/main.cc") so --help shows them.
void parse_service_flags(int argc, char** argv, const std::string& usage, const std::vector<std::string>& flag_files);

}  // namespace freekv
