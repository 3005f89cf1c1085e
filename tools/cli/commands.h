// Subcommands of the `qtf` tool. Each returns the process exit code.
#pragma once

namespace qtf::cli {
int cmd_inspect(int argc, char** argv);
int cmd_verify(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
}  // namespace qtf::cli
