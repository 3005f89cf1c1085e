/* Embedding qtf through its C API: load a model, generate greedily, print per-token statistics.
 * Build: cc generate.c -I engine/capi -L build/engine -lqtf_host -lqtf_core -lstdc++ -lm
 *   or, against an installed qtf (cmake --install): cc generate.c $(pkg-config --cflags --libs qtf)
 * Run:   ./generate MODEL.qtf "PROMPT" N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qtf.h"

static int check(qtf_status s, const char* what) {
  if (s != QTF_OK) fprintf(stderr, "%s failed (%d): %s\n", what, (int)s, qtf_last_error());
  return s == QTF_OK;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL.qtf PROMPT N\n", argv[0]);
    return 2;
  }
  const int n_predict = atoi(argv[3]);
  qtf_model* model = NULL;
  qtf_context* ctx = NULL;
  qtf_sampler* sampler = NULL;
  int rc = 1;
  if (!check(qtf_model_load_file(argv[1], 1, &model), "load")) return 1;

  qtf_model_info info;
  qtf_model_get_info(model, &info);
  printf("model: %d layers, d=%d, vocab %d, %lld parameters, %d qubits\n", info.n_layers, info.d_model,
         info.vocab_size, (long long)info.parameters, info.n_qubits);

  qtf_context_params cp = qtf_context_default_params();
  qtf_sampler_params sp = qtf_sampler_default_params();
  sp.temperature = 0; /* greedy: the same text every run */
  if (!check(qtf_context_new(model, &cp, &ctx), "context") || !check(qtf_sampler_new(model, &sp, &sampler), "sampler"))
    goto done;

  int32_t tokens[512];
  int32_t n = 0;
  if (!check(qtf_tokenize(model, argv[2], strlen(argv[2]), tokens, 512, &n), "tokenize")) goto done;
  if (n == 0) {
    fprintf(stderr, "the prompt has no tokens in this vocabulary\n");
    goto done;
  }
  if (!check(qtf_decode(ctx, tokens, n), "decode prompt")) goto done;

  printf("text: %s", argv[2]);
  long long flops = 0;
  int quantum_layers = 0, generated = 0;
  for (int i = 0; i < n_predict; ++i) {
    int32_t next;
    const char* bytes;
    size_t len;
    if (!check(qtf_sample(sampler, ctx, &next), "sample") || !check(qtf_token_text(model, next, &bytes, &len), "text"))
      goto done;
    fwrite(bytes, 1, len, stdout);
    ++generated;
    qtf_status s = qtf_decode(ctx, &next, 1);
    if (s == QTF_ERR_CONTEXT_FULL) break;
    if (!check(s, "decode")) goto done;
    qtf_token_stats ts;
    qtf_layer_stats layers[32];
    if (!check(qtf_get_token_stats(ctx, &ts, layers, 32), "stats")) goto done;
    flops += ts.flops;
    for (int l = 0; l < ts.n_layers && l < 32; ++l) quantum_layers += layers[l].quantum;
  }
  printf("\ngenerated %d tokens, %.0f FLOPs/token, %d quantum-routed token-layers\n", generated,
         generated ? (double)flops / generated : 0.0, quantum_layers);

  /* Hostile input is an error, not a crash. */
  int32_t bad = info.vocab_size + 5;
  if (qtf_decode(ctx, &bad, 1) != QTF_ERR_OUT_OF_RANGE || qtf_decode(NULL, &bad, 1) != QTF_ERR_INVALID_ARGUMENT) {
    fprintf(stderr, "hostile input was not rejected\n");
    goto done;
  }
  printf("bad token rejected: %s\n", qtf_last_error());
  rc = 0;
done:
  qtf_sampler_free(sampler);
  qtf_context_free(ctx);
  qtf_model_free(model);
  return rc;
}
