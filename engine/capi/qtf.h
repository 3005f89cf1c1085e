/* qtf C API: embed the engine in apps (C, C++, Swift, Kotlin/JNI, ...).
 *
 * Every function returns a qtf_status (0 = QTF_OK); on failure qtf_last_error() gives a one-line
 * message for the calling thread. No exceptions cross this boundary. A model is read-only once loaded
 * and may be shared by several contexts, one per thread. Memory is allocated at load and context
 * creation only; qtf_decode and qtf_sample never allocate. */
#ifndef QTF_H
#define QTF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  QTF_OK = 0,
  QTF_ERR_INVALID_ARGUMENT = 1,
  QTF_ERR_BAD_MODEL = 2,     /* the file failed verification or does not describe a usable model */
  QTF_ERR_IO = 3,
  QTF_ERR_NO_MEMORY = 4,
  QTF_ERR_CONTEXT_FULL = 5,
  QTF_ERR_OUT_OF_RANGE = 6,  /* token id outside the vocabulary, output buffer too small, ... */
} qtf_status;

typedef struct qtf_model qtf_model;
typedef struct qtf_context qtf_context;
typedef struct qtf_sampler qtf_sampler;

/* The calling thread's last error message ("" if none). Valid until its next qtf call. */
const char* qtf_last_error(void);

/* ---- kernels ---- */
/* Picks the SIMD kernel variant for the whole process: "auto" (the best this CPU runs: the default),
 * "scalar", "sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon" or "neondot". An unknown name, or a variant this build or CPU lacks,
 * is QTF_ERR_INVALID_ARGUMENT (the message lists what is available). For testing and benchmarking:
 * call it before decoding, never while another thread decodes. The library reads no environment
 * variable; the qtf tool and the Python package map QTF_SIMD onto this call. */
qtf_status qtf_set_simd(const char* name);
/* The variant in use: "scalar", "sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon" or "neondot". */
const char* qtf_simd(void);

/* ---- models ---- */
/* path: a .qtf file (mapped when use_mmap, else read), or a GGUF file, a llama2.c checkpoint or a Hugging
 * Face directory, converted into a .qtf image in memory at each load (`qtf convert` makes a .qtf once). */
qtf_status qtf_model_load_file(const char* path, int use_mmap, qtf_model** out);
/* How qtf_model_load_file_with loads. The struct starts with its own size, so it can grow without
 * breaking binaries built against an older header: take it from qtf_load_default_options() and change
 * the fields you need. */
typedef struct {
  uint32_t struct_size;        /* sizeof(qtf_load_options) as the caller was compiled */
  int32_t use_mmap;            /* a .qtf file: mapped (1, the default) or read (0) */
  const char* tokenizer_path;  /* a llama2.c checkpoint: its tokenizer.bin (NULL, the default: a stand-in
                                  byte tokenizer, as `qtf convert` without --tokenizer) */
  int32_t gguf_f32;            /* a GGUF: 1 = its Q8_0/Q4_1/Q5_x/Q2_K..Q6_K/IQ1..IQ4 matrices to f32
                                  (their exact values, 4x the memory); 0 (default): requantized to q8, a scale
                                  per row (docs/llama.md "Why q8"); as `qtf --gguf-f32` */
  int32_t gguf_q4;             /* a GGUF: 1 = those it stores in 4 bits or fewer (Q4_1, Q2_K..Q4_K, IQ1..IQ4)
                                  requantized to q4 instead (half of q8's memory, a second rounding's error;
                                  not with gguf_f32); as `qtf --gguf-q4` */
} qtf_load_options;
qtf_load_options qtf_load_default_options(void);
/* qtf_model_load_file with the options above (options NULL: their defaults). */
qtf_status qtf_model_load_file_with(const char* path, const qtf_load_options* options, qtf_model** out);
/* Uses data in place (zero copy) if it is 64-byte aligned, else copies it once. The caller keeps
 * data alive and unchanged until the model is freed (see qtf_model_free). */
qtf_status qtf_model_load_memory(const void* data, size_t size, qtf_model** out);
/* Drops the caller's reference: the model is freed now, or when its last context and sampler are
 * freed, whichever comes later. Contexts and samplers made from it stay usable; the model handle
 * itself must not be used after this call. */
void qtf_model_free(qtf_model* model);

typedef struct {
  int32_t vocab_size, d_model, n_layers, n_heads, d_ff, context;
  int32_t n_qubits, tensorized, quantum_attention, adaptive_rank;
  int64_t parameters, block_parameters;
} qtf_model_info;
qtf_status qtf_model_get_info(const qtf_model* model, qtf_model_info* out);
/* Applies a LoRA adapter file (qtf.arch = lora, made by `qtf lora` or the trainer; docs/qllm.md) to a
 * loaded model: the adapter is mapped (use_mmap != 0) or read, and used in place; the base weights are
 * neither copied nor changed. One adapter per model, applied before any context is created on it (the
 * model is read-only afterwards). Names, layers or shapes that do not fit the model are refused. */
qtf_status qtf_model_apply_adapter_file(qtf_model* model, const char* path, int use_mmap);

/* ---- tokens ---- */
/* Encodes UTF-8 (or any bytes; bytes with no token are skipped). *n_tokens receives the count
 * produced; QTF_ERR_OUT_OF_RANGE if max_tokens is too small (then *n_tokens is the count needed). */
qtf_status qtf_tokenize(const qtf_model* model, const char* text, size_t len, int32_t* tokens, int32_t max_tokens,
                        int32_t* n_tokens);
/* qtf_tokenize with flags (0: exactly qtf_tokenize). QTF_TOKENIZE_ADD_SPECIAL: BOS first (and EOS last)
 * when the model's tokenizer says so (tokenizer.add_bos / add_eos: a prompt as `qtf run` encodes it);
 * QTF_TOKENIZE_PARSE_SPECIAL: special tokens written in the text ("<s>", "<|im_end|>") become their
 * ids instead of being spelled out. Unknown flag bits are QTF_ERR_INVALID_ARGUMENT. */
enum { QTF_TOKENIZE_ADD_SPECIAL = 1, QTF_TOKENIZE_PARSE_SPECIAL = 2 };
qtf_status qtf_tokenize_ex(const qtf_model* model, const char* text, size_t len, uint32_t flags, int32_t* tokens,
                           int32_t max_tokens, int32_t* n_tokens);
/* The bytes of one token (not NUL-terminated) and their count. */
qtf_status qtf_token_text(const qtf_model* model, int32_t token, const char** bytes, size_t* len);

/* ---- contexts ---- */
typedef enum { QTF_ROUTE_AUTO = 0, QTF_ROUTE_CLASSICAL = 1, QTF_ROUTE_QUANTUM = 2 } qtf_route;
typedef enum { QTF_ACT_QUANTUM = 0, QTF_ACT_FOURIER = 1, QTF_ACT_SPLINE = 2 } qtf_act_path;

typedef struct {
  int32_t n_ctx;        /* 0 = the model's context length */
  qtf_route route;
  int32_t fixed_rank;   /* 0 = entropy schedule */
  qtf_act_path act_path;
  int32_t override_theta, override_alpha;
  float theta, alpha;
} qtf_context_params;
qtf_context_params qtf_context_default_params(void);

qtf_status qtf_context_new(const qtf_model* model, const qtf_context_params* params, qtf_context** out);

/* Options added after qtf_context_params was frozen. The struct starts with its own size, so it can grow
 * without breaking binaries built against an older header: take it from qtf_context_default_options()
 * and change the fields you need. */
typedef struct {
  uint32_t struct_size;       /* sizeof(qtf_context_options) as the caller was compiled */
  int32_t n_batch;            /* prompt tokens run through the model together; 0 = default (64), max 1024 */
  int32_t pack_tt;            /* 1 (default): TT cores copied once into the kernels' order (faster decode,
                                 about the TT cores' size per stored rank of extra arena); 0: read in place
                                 (RAM-tight targets); the same logits either way */
  int32_t attention_samples;  /* -1 (default): the model's; 0: exact softmax; N > 0: N draws per head */
  int32_t override_seed;      /* 1: attention_seed replaces the model's sampling seed */
  uint64_t attention_seed;
  int64_t mem_budget;         /* execution by cost (docs/runtime.md "Execution by cost"): arena bytes for dense copies of TT linears
                                 of a fixed rank where those are predicted faster; -1 (default): auto, the
                                 original's dense q8 size; 0: never (the TT plans as stored) */
  int32_t mem_copy;           /* 0 (default): f32 or int8 copies, the faster; 1: f32 only (exact up to float
                                 rounding); 2: int8 only */
  int32_t reserved0;          /* unused (ignored): keeps the struct's sizes distinct (act_quant at byte 48, not
                                 in the padding of the 48-byte struct before it) */
  int32_t act_quant;          /* i8/q4 dense weights (docs/quantize.md "Integer dot products"), QTF_ACT_QUANT_*:
                                 AUTO (default): int8 x int8 dot products with the activations quantised per
                                 block of 32 where the kernel variant's integer GEMM is the faster; OFF: the
                                 weights widened to float (the exact float path); Q8: always integer, also for
                                 the int8 copies of execution by cost. As `qtf --act-quant auto|off|q8`. */
} qtf_context_options;
enum { QTF_ACT_QUANT_AUTO = 0, QTF_ACT_QUANT_OFF = 1, QTF_ACT_QUANT_Q8 = 2 };
qtf_context_options qtf_context_default_options(void);
/* qtf_context_new with the options above (options NULL: their defaults). */
qtf_status qtf_context_new_with(const qtf_model* model, const qtf_context_params* params,
                                const qtf_context_options* options, qtf_context** out);
/* Bytes of the context's arena (KV cache, memory slots, packed TT cores, scratch): all it allocated. */
size_t qtf_context_arena_bytes(const qtf_context* ctx);
/* Splits the work of qtf_decode over n_threads threads (1..256; started here, once: decoding still
   never allocates). Resets the context (its KV cache is laid out again). Not while another thread
   decodes on it. (A function rather than a field of qtf_context_params: that struct is returned by value
   from qtf_context_default_params, so growing it would break binaries built against this header.) */
qtf_status qtf_context_set_threads(qtf_context* ctx, int32_t n_threads);
void qtf_context_free(qtf_context* ctx);
void qtf_context_reset(qtf_context* ctx);
int32_t qtf_context_n_past(const qtf_context* ctx);  /* cache slots in use, memory slots included */
/* The model's memory slots (docs/qllm.md): a fixed prefix of the cache, made at context creation and kept
 * by qtf_context_reset (0 for models without them). */
int32_t qtf_context_n_prefix(const qtf_context* ctx);
int32_t qtf_context_n_ctx(const qtf_context* ctx);

/* Appends tokens and runs them (a prompt in blocks of n_batch tokens, default 64, through each layer together); afterwards
   qtf_get_logits gives the last token's logits. */
qtf_status qtf_decode(qtf_context* ctx, const int32_t* tokens, int32_t n_tokens);
const float* qtf_get_logits(const qtf_context* ctx); /* vocab_size floats, NULL before the first decode */

/* Per-token statistics of the last decoded token. */
typedef struct {
  float entropy;     /* S, bits */
  float hardness;    /* S / (Q/2) */
  int32_t quantum;   /* 1: routed to quantum-kernel attention */
  int32_t rank;
} qtf_layer_stats;
typedef struct {
  int32_t pos, token, n_layers;
  int64_t flops, qsim_flops, circuits;
} qtf_token_stats;
qtf_status qtf_get_token_stats(const qtf_context* ctx, qtf_token_stats* out, qtf_layer_stats* layers,
                               int32_t max_layers);

/* ---- sampling ---- */
typedef struct {
  float temperature; /* <= 0: greedy */
  int32_t top_k;
  float top_p, min_p, repeat_penalty;
  int32_t repeat_last_n;
  uint64_t seed;
} qtf_sampler_params;
qtf_sampler_params qtf_sampler_default_params(void);
qtf_status qtf_sampler_new(const qtf_model* model, const qtf_sampler_params* params, qtf_sampler** out);
void qtf_sampler_free(qtf_sampler* sampler);
/* The sampler's random generator: QTF_RNG_SPLITMIX64 (the default) or QTF_RNG_RUNC, llama2.c run.c's
 * xorshift* seeded as run.c seeds it (the state starts at the seed), so a seed gives run.c's sample of the
 * same logits (docs/llama.md). Restarts the generator from the seed; the repetition history is kept.
 * (A function rather than a field of qtf_sampler_params: that struct is returned by value.) */
typedef enum { QTF_RNG_SPLITMIX64 = 0, QTF_RNG_RUNC = 1 } qtf_rng;
qtf_status qtf_sampler_set_rng(qtf_sampler* sampler, qtf_rng rng);
/* Picks the next token from the context's last logits and remembers it (repetition penalty).
 * QTF_ERR_BAD_MODEL when a logit is NaN or Inf (damaged weights: `qtf verify --deep` finds them). */
qtf_status qtf_sample(qtf_sampler* sampler, const qtf_context* ctx, int32_t* token);

#ifdef __cplusplus
}
#endif
#endif /* QTF_H */
