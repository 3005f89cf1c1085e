// qtf convert IN OUT.qtf: a GGUF, llama2.c checkpoint or Hugging Face directory (engine/import) into a
// .qtf file, once, so later loads map it in place instead of converting it every time.
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <vector>

#include "commands.h"
#include "host/file.h"
#include "host/session.h"
#include "import/import.h"

namespace qtf::cli {

int cmd_convert(int argc, char** argv) {
  const char kUsage[] =
      "usage: qtf convert IN OUT.qtf [--tokenizer tokenizer.bin] [--gguf-f32 | --gguf-q4]\n"
      "  IN: a GGUF file (llama, qwen2), a llama2.c checkpoint (its tokenizer.bin with --tokenizer) or a\n"
      "  Hugging Face directory. OUT is written atomically (a temporary file, then a rename) and only when\n"
      "  the converted model verifies and binds; an OUT that exists must be a regular file (it is replaced).\n"
      "  A GGUF's Q4_0 matrices stay q4 and F16 f16; its Q8_0/Q4_1/Q5_x/Q2_K..Q6_K/IQ1..IQ4 matrices become\n"
      "  q8 (int8, a scale per row), or f32 with --gguf-f32 (their exact values, 4x the memory); --gguf-q4\n"
      "  makes those stored in 4 bits or fewer (Q4_1, Q2_K..Q4_K, IQ1..IQ4) q4 (half of q8's memory, a second\n"
      "  rounding's error).\n";
  const char *in = nullptr, *out = nullptr;
  import::Options opt;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!std::strcmp(argv[i], "--tokenizer")) {
      if (i + 1 >= argc) { std::fprintf(stderr, "qtf convert: --tokenizer needs a value\n"); return 2; }
      opt.tokenizer_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--gguf-f32")) {
      opt.gguf_dequantize_f32 = true;
    } else if (!std::strcmp(argv[i], "--gguf-q4")) {
      opt.gguf_requantize_q4 = true;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      std::fprintf(stderr, "qtf convert: unknown option '%s'\n%s", argv[i], kUsage);
      return 2;
    } else if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else { std::fprintf(stderr, "qtf convert: unexpected argument '%s'\n%s", argv[i], kUsage); return 2; }
  }
  if (!in || !out) { std::fprintf(stderr, "%s", kUsage); return 2; }
  struct stat so, si;
  if (stat(out, &so) == 0) {
    if (!S_ISREG(so.st_mode)) {
      std::fprintf(stderr, "qtf convert: %s exists and is not a regular file; not replacing it\n", out);
      return 1;
    }
    if (stat(in, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
      std::fprintf(stderr, "qtf convert: %s and %s are the same file\n", in, out);
      return 1;
    }
  }
  const import::Source src = import::detect(in);
  format::Image image;  // allocated once at its final size, each tensor converted straight into it
  format::ModelFile opened;
  Status st = import::to_qtf(in, opt, &image, &opened);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf convert: %s\n", st.message());
    return 1;
  }
  {  // write only what the engine runs: configuration, tensors and tokenizer bind
    host::LoadedModel m;
    st = m.load_verified(opened);
    if (!st.ok()) {
      std::fprintf(stderr, "qtf convert: %s: the converted model does not bind: %s\n", in, st.message());
      return 1;
    }
    st = host::write_file_atomic(out, image.data(), image.size());  // one write, to a temporary name, then a rename
    if (!st.ok()) {
      std::fprintf(stderr, "qtf convert: %s\n", st.message());
      return 1;
    }
    const ModelConfig& c = m.model().cfg;
    std::printf("%s (%s) -> %s: %lu bytes; vocab %d, d %d, %d layers, %d heads (%d kv), d_ff %d, context %d\n", in,
                import::source_name(src), out, (unsigned long)image.size(), c.vocab, c.d, c.n_layers, c.n_heads,
                c.n_kv_heads, c.d_ff, c.context);
  }
  return 0;
}

}  // namespace qtf::cli
