// Every tensor of a GGUF dequantized by ggml itself (its type traits' to_float), for gguf_types.py to
// compare with qtf's import bit for bit. Built against a llama.cpp tree outside the project:
//   cc -O2 bench/real/ggml_dequant.c -I LLAMA/ggml/include -L LLAMA/build/bin -lggml-base -o ggml_dequant
//   ggml_dequant MODEL.gguf OUT.bin   # per tensor: u32 name length, name, u64 count, count f32
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "gguf.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL.gguf OUT.bin\n", argv[0]);
    return 2;
  }
  struct ggml_context* ctx = NULL;
  struct gguf_init_params params = {false, &ctx};
  struct gguf_context* g = gguf_init_from_file(argv[1], params);
  if (!g) {
    fprintf(stderr, "%s: ggml could not read it\n", argv[1]);
    return 1;
  }
  FILE* out = fopen(argv[2], "wb");
  if (!out) return 1;
  for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
    const char* name = gguf_get_tensor_name(g, i);
    struct ggml_tensor* t = ggml_get_tensor(ctx, name);
    const int64_t n = ggml_nelements(t);
    float* y = malloc(sizeof(float) * (size_t)n);
    if (t->type == GGML_TYPE_F32) memcpy(y, t->data, sizeof(float) * (size_t)n);
    else ggml_get_type_traits(t->type)->to_float(t->data, y, n);
    const uint32_t len = (uint32_t)strlen(name);
    const uint64_t count = (uint64_t)n;
    fwrite(&len, 4, 1, out), fwrite(name, 1, len, out), fwrite(&count, 8, 1, out);
    fwrite(y, sizeof(float), (size_t)n, out);
    printf("%s %s %lld\n", name, ggml_type_name(t->type), (long long)n);
    free(y);
  }
  fclose(out);
  gguf_free(g);
  ggml_free(ctx);
  return 0;
}
