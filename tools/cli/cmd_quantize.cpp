// qtf quantize: rewrites an f32 model with its matrices as q8 or f16 (host/quantize.h, docs/quantize.md).
#include <cstdio>
#include <cstring>
#include <vector>

#include "commands.h"
#include "host/file.h"
#include "host/quantize.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf quantize IN.qtf OUT.qtf --type q8|f16\n"
    "  q8:  dense matrices and embeddings as int8 with one f32 scale per row (dtype q8), TT cores as\n"
    "       int8 with one scale per core (dtype i8); f16: those matrices as IEEE half.\n"
    "  Norms, biases and the quantum parts stay f32. The input's matrices must be f32.\n";

}  // namespace

int cmd_quantize(int argc, char** argv) {
  const char *in = nullptr, *out = nullptr, *type = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!std::strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
    else if (argv[i][0] == '-') { std::fprintf(stderr, "qtf quantize: unknown option '%s'\n%s", argv[i], kUsage); return 2; }
    else if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else { std::fprintf(stderr, "qtf quantize: unexpected argument '%s'\n%s", argv[i], kUsage); return 2; }
  }
  if (!in || !out || !type) { std::fprintf(stderr, "%s", kUsage); return 2; }
  if (std::strcmp(type, "q8") && std::strcmp(type, "f16")) {
    std::fprintf(stderr, "qtf quantize: --type '%s' is not q8 or f16\n", type);
    return 2;
  }
  host::FileBytes bytes;  // mapped: page-aligned, as quantize_model needs
  std::vector<uint8_t> file;
  host::QuantizeReport rep;
  Status st = bytes.open(in);
  if (st.ok())
    st = host::quantize_model(bytes.data(), bytes.size(), type[0] == 'q' ? host::QuantType::q8 : host::QuantType::f16,
                              &file, &rep);
  if (st.ok()) st = host::write_file_atomic(out, file.data(), file.size());
  if (!st.ok()) {
    std::fprintf(stderr, "qtf quantize: %s: %s: %s\n", in, err_name(st.code()), st.message());
    return 1;
  }
  std::printf("%s: %zu dense matrices %s, %zu TT cores %s; %zu -> %zu bytes\n", out, rep.dense,
              type[0] == 'q' ? "q8 (scale per row)" : "f16", rep.cores, type[0] == 'q' ? "i8 (scale per core)" : "f16",
              bytes.size(), file.size());
  return 0;
}

}  // namespace qtf::cli
