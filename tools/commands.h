// The subcommands of the `freekv` CLI. Each takes argv with argv[0] = the subcommand name and
// returns the process exit code (0 ok, 1 failed, 2 bad usage).
#pragma once

namespace freekv {

int cmd_run(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_mkmodel(int argc, char** argv);
int cmd_mktokenizer(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_up(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_admin(int argc, char** argv);
int cmd_eval(int argc, char** argv);

}  // namespace freekv
