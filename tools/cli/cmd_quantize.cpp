// qtf quantize: rewrites an f32 model with its matrices as q8, f16, q4, q3, q4s or q3s (host/quantize.h, docs/quantize.md).
#include <cstdio>
#include <cstring>
#include <vector>

#include "commands.h"
#include "host/file.h"
#include "host/quantize.h"

namespace qtf::cli {
namespace {

const char kUsage[] =
    "usage: qtf quantize IN.qtf OUT.qtf --type q8|f16|q4|q3|q4s|q3s [--q4-scale search|absmax]\n"
    "  q8:  dense matrices and embeddings as int8 with one f32 scale per row (dtype q8), TT cores as\n"
    "       int8 with one scale per core (dtype i8); f16: those matrices as IEEE half.\n"
    "  q4:  dense matrices and embeddings as 4-bit blocks of 32 with an f16 scale each (dtype q4, GGUF\n"
    "       Q4_0's layout); the head (the embeddings when tied) and TT cores as for q8. --q4-scale:\n"
    "       search (default) tries scales for the least squared error per block; absmax is Q4_0's rule\n"
    "       (largest magnitude / -8).\n"
    "  q3:  as q4 with 3-bit blocks of 32 (dtype q3: 14 bytes a block, 3.5 bits a value; --q4-scale\n"
    "       applies, absmax being largest magnitude / -4).\n"
    "  q4s, q3s: as q4, q3 with each group of 8 blocks' scales coded as one f16 and eight 6-bit\n"
    "       sub-scales (dtypes q4s, q3s: 4.25, 3.25 bits a value; run as q4 after load).\n"
    "  Norms, biases and the quantum parts stay f32. The input's matrices must be f32.\n";

}  // namespace

int cmd_quantize(int argc, char** argv) {
  const char *in = nullptr, *out = nullptr, *type = nullptr, *q4_scale = "search";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!std::strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
    else if (!std::strcmp(argv[i], "--q4-scale") && i + 1 < argc) q4_scale = argv[++i];
    else if (argv[i][0] == '-') { std::fprintf(stderr, "qtf quantize: unknown option '%s'\n%s", argv[i], kUsage); return 2; }
    else if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else { std::fprintf(stderr, "qtf quantize: unexpected argument '%s'\n%s", argv[i], kUsage); return 2; }
  }
  if (!in || !out || !type) { std::fprintf(stderr, "%s", kUsage); return 2; }
  if (std::strcmp(type, "q8") && std::strcmp(type, "f16") && std::strcmp(type, "q4") && std::strcmp(type, "q3") &&
      std::strcmp(type, "q4s") && std::strcmp(type, "q3s")) {
    std::fprintf(stderr, "qtf quantize: --type '%s' is not q8, f16, q4, q3, q4s or q3s\n", type);
    return 2;
  }
  if (std::strcmp(q4_scale, "search") && std::strcmp(q4_scale, "absmax")) {
    std::fprintf(stderr, "qtf quantize: --q4-scale '%s' is not search or absmax\n", q4_scale);
    return 2;
  }
  const host::QuantType qt = !std::strcmp(type, "q8") ? host::QuantType::q8
                             : !std::strcmp(type, "q4") ? host::QuantType::q4
                             : !std::strcmp(type, "q3") ? host::QuantType::q3
                             : !std::strcmp(type, "q4s") ? host::QuantType::q4s
                             : !std::strcmp(type, "q3s") ? host::QuantType::q3s
                                                        : host::QuantType::f16;
  host::FileBytes bytes;  // mapped: page-aligned, as quantize_model needs
  std::vector<uint8_t> file;
  host::QuantizeReport rep;
  Status st = bytes.open(in);
  if (st.ok())
    st = host::quantize_model(bytes.data(), bytes.size(), qt, &file, &rep,
                              q4_scale[0] == 'a' ? host::Q4Scale::absmax : host::Q4Scale::search);
  if (st.ok()) st = host::write_file_atomic(out, file.data(), file.size());
  if (!st.ok()) {
    std::fprintf(stderr, "qtf quantize: %s: %s: %s\n", in, err_name(st.code()), st.message());
    return 1;
  }
  const char* dense = qt == host::QuantType::q8 ? "q8 (scale per row)"
                      : qt == host::QuantType::q4 ? "q4 (scale per block of 32; the head q8)"
                      : qt == host::QuantType::q3 ? "q3 (scale per block of 32; the head q8)"
                      : qt == host::QuantType::q4s ? "q4s (6-bit scale per block of 32, f16 per 8 blocks; the head q8)"
                      : qt == host::QuantType::q3s ? "q3s (6-bit scale per block of 32, f16 per 8 blocks; the head q8)"
                                                  : "f16";
  std::printf("%s: %zu dense matrices %s, %zu TT cores %s; %zu -> %zu bytes\n", out, rep.dense, dense, rep.cores,
              qt == host::QuantType::f16 ? "f16" : "i8 (scale per core)", bytes.size(), file.size());
  return 0;
}

}  // namespace qtf::cli
