// `freekv`: the command-line entry point. Each subcommand lives in its own cmd_*.cc.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"run", freekv::cmd_run, "generate text from a prompt in this process (no services)"},
    {"tokenize", freekv::cmd_tokenize, "print the token ids of stdin's text as a JSON array"},
    {"mktokenizer", freekv::cmd_mktokenizer, "train a byte-level BPE tokenizer on a text file"},
    {"mkmodel", freekv::cmd_mkmodel, "write a deterministic random model in Hugging Face format"},
    {"bench", freekv::cmd_bench, "measure prefill and decode speed against memory bandwidth"},
    {"up", freekv::cmd_up, "start kvstore, coordinator and worker on this machine until Ctrl-C"},
    {"generate", freekv::cmd_generate, "send a generation request to a coordinator and stream the reply"},
    {"admin", freekv::cmd_admin, "workers, sessions (KV occupancy per tier) and pools of a coordinator"},
    {"eval", freekv::cmd_eval, "passkey, key-value and agreement tasks under each retrieval policy"},
};

void usage(FILE* out) {
  std::fprintf(out, "usage: freekv <command> [options]   (freekv <command> --help for its options)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) == 0) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "freekv: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
