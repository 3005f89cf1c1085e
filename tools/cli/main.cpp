// qtf: the command line tool. One binary, one subcommand per job.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "commands.h"
#include "kernels/kernels.h"
#ifdef QTF_HAVE_SERVER
#include "serve.h"  // tools/server: built when cpp-httplib and nlohmann/json are installed
#endif

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"run", qtf::cli::cmd_run, "generate text offline, with the per-token rank/route/energy report"},
    {"eval", qtf::cli::cmd_eval, "perplexity on a text file; --ablate runtime switches, --sweep theta x alpha"},
    {"bench", qtf::cli::cmd_bench, "tokens per second (pp/tg tests), load time and peak memory"},
    {"tokenize", qtf::cli::cmd_tokenize, "a model's tokenizer on a text: ids and pieces (--ids, --no-bos, --parse-special)"},
    {"inspect", qtf::cli::cmd_inspect, "print a model's metadata and tensor table (--json)"},
    {"verify", qtf::cli::cmd_verify, "verify a model file; exit 1 with the error if damaged"},
    {"convert", qtf::cli::cmd_convert, "a GGUF, llama2.c checkpoint or Hugging Face directory to a .qtf file"},
    {"quantize", qtf::cli::cmd_quantize, "rewrite a model's matrices as q8 (int8, scale per row) or f16"},
#ifdef QTF_HAVE_SERVER
    {"serve", qtf::cli::cmd_serve, "local HTTP server: OpenAI-style completions, /health, /metrics"},
#endif
};

void usage(FILE* out) {
  std::fprintf(out, "usage: qtf <command> [options]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-9s %s\n", c.name, c.help);
  std::fprintf(out, "\n'qtf <command> --help' shows a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // QTF_SIMD=scalar|sse2|avx2|avxvnni|avx512|avx512vnni|neon|neondot picks the kernel variant (default: the best this CPU runs).
  if (const char* simd = std::getenv("QTF_SIMD")) {
    const qtf::Status st = qtf::kern::select_simd(simd);
    if (!st.ok()) {
      std::fprintf(stderr, "qtf: QTF_SIMD: %s\n", st.message());
      return 2;
    }
  }
  for (const Command& c : kCommands)
    if (!std::strcmp(argv[1], c.name)) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "qtf: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
