#include "options.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qtf::cli {

const char kModelOptionsHelp[] =
    "model and runtime switches:\n"
    "  -m, --model FILE        model: a .qtf, or a GGUF, llama2.c checkpoint or Hugging Face directory\n"
    "                          (converted in memory at each load; `qtf convert` makes a .qtf once)\n"
    "  --tokenizer FILE        a llama2.c checkpoint's tokenizer.bin\n"
    "  --gguf-f32              a GGUF's Q8_0/Q4_1/Q5_x/Q2_K..Q6_K/IQ1..IQ4 matrices as f32 (exact)\n"
    "                          instead of requantized to q8 (default: a quarter of the memory)\n"
    "  --gguf-q4               those stored in 4 bits or fewer (Q4_1, Q2_K..Q4_K, IQ1..IQ4) requantized to\n"
    "                          q4 instead (half of q8's memory; a second rounding's error)\n"
    "  -c, --ctx-size N        context length (default: the model's)\n"
    "  -b, --batch N           prompt tokens run through the model together (default 64; 1 = token by token)\n"
    "  -t, --threads N         threads (default 1)\n"
    "  --no-mmap, --mmap       read the file into memory, or map it (the default, but for serve: a\n"
    "                          model file rewritten in place changes under a mapping; docs/reliability.md)\n"
    "  --no-pack-tt            read TT cores in place: a smaller arena (no f32 copy per stored rank, also\n"
    "                          for q8/f16 cores), slower decode\n"
    "  --route auto|classical|quantum   force the attention route of every token\n"
    "  --rank N                run every token at TT rank N (default: entropy schedule)\n"
    "  --act quantum|fourier|spline     DARUAN activation path (default fourier, exact)\n"
    "  --theta X, --alpha X    override the router threshold / rank slope\n"
    "  --lora FILE             apply a LoRA adapter file at load (the base weights stay mapped, not copied)\n"
    "  --attn-samples N        sampled attention: estimate the softmax weights from N draws (0 = exact;\n"
    "                          default: the model's)\n"
    "  --attn-seed N           seed of sampled attention's draws (default: the model's)\n"
    "  --mem-budget BYTES|auto|0   execution by cost: arena bytes TT linears of a fixed rank may take as\n"
    "                          dense copies where the cost model predicts those faster (auto, the default:\n"
    "                          the original's dense q8 size; 0: never; K/M/G suffixes)\n"
    "  --mem-copy auto|f32|q8  which dense copies it may make (default auto: f32 or int8, the faster)\n"
    "  --act-quant off|q8|auto i8/q4 weights: q8 = quantise activations per block of 32 and multiply\n"
    "                          int8 x int8 (llama.cpp's Q8_0 way); off = widen weights to float;\n"
    "                          auto (default) = q8 with the avx512vnni, avxvnni and avx2 kernels\n"
    "                          (avx512: q4 weights only), else off\n"
    "  --profile NAME          energy profile (default cpu_xeon; see --profiles)\n"
    "  --profiles FILE         extra energy profiles (engine/energy/profiles.txt format)\n";

bool parse_int(const char* flag, const char* s, long lo, long hi, int* out) {
  char* end;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi) {
    std::fprintf(stderr, "qtf: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo, hi, s);
    return false;
  }
  *out = (int)v;
  return true;
}

bool parse_float(const char* flag, const char* s, float* out) {
  char* end;
  float v = std::strtof(s, &end);
  if (*end || end == s || !std::isfinite(v)) {
    std::fprintf(stderr, "qtf: %s expects a number, got '%s'\n", flag, s);
    return false;
  }
  *out = v;
  return true;
}

// BYTES (with an optional K, M or G suffix, powers of 1024), auto (-1) or 0.
bool parse_mem_budget(const char* s, int64_t* out) {
  if (!std::strcmp(s, "auto")) {
    *out = -1;
    return true;
  }
  char* end;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  const int shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20 : *end == 'G' || *end == 'g' ? 30 : 0;
  if (shift) ++end;
  if (errno || *end || end == s || v < 0 || v > (1ll << 50) >> shift) {
    std::fprintf(stderr, "qtf: --mem-budget expects BYTES (K/M/G suffixes), auto or 0, got '%s'\n", s);
    return false;
  }
  *out = (int64_t)v << shift;
  return true;
}

int parse_shared_option(int argc, char** argv, int* i, ModelOptions* o, const char* usage) {
  const char* a = argv[*i];
  if (!std::strcmp(a, "-h") || !std::strcmp(a, "--help")) {
    std::printf("%s%s", usage, kModelOptionsHelp);
    return 0;
  }
  auto value = [&](const char** v) {
    if (*i + 1 >= argc) {
      std::fprintf(stderr, "qtf: %s needs a value\n", a);
      return false;
    }
    *v = argv[++*i];
    return true;
  };
  const char* v = nullptr;
  if (!std::strcmp(a, "--no-mmap")) { o->mmap = false; return kConsumed; }
  if (!std::strcmp(a, "--mmap")) { o->mmap = true; return kConsumed; }
  if (!std::strcmp(a, "--no-pack-tt")) { o->ctx.pack_tt = false; return kConsumed; }
  if (!std::strcmp(a, "--gguf-f32")) { o->gguf_f32 = true; return kConsumed; }
  if (!std::strcmp(a, "--gguf-q4")) { o->gguf_q4 = true; return kConsumed; }
  bool known = !std::strcmp(a, "-m") || !std::strcmp(a, "--model") || !std::strcmp(a, "-c") ||
               !std::strcmp(a, "--ctx-size") || !std::strcmp(a, "-b") || !std::strcmp(a, "--batch") ||
               !std::strcmp(a, "-t") || !std::strcmp(a, "--threads") ||
               !std::strcmp(a, "--route") || !std::strcmp(a, "--rank") ||
               !std::strcmp(a, "--act") || !std::strcmp(a, "--theta") || !std::strcmp(a, "--alpha") ||
               !std::strcmp(a, "--profile") || !std::strcmp(a, "--profiles") || !std::strcmp(a, "--lora") ||
               !std::strcmp(a, "--tokenizer") ||
               !std::strcmp(a, "--attn-samples") || !std::strcmp(a, "--attn-seed") || !std::strcmp(a, "--act-quant") ||
               !std::strcmp(a, "--mem-budget") || !std::strcmp(a, "--mem-copy");
  if (!known) return kNotShared;
  if (!value(&v)) return 2;
  if (!std::strcmp(a, "-m") || !std::strcmp(a, "--model")) o->model_path = v;
  else if (!std::strcmp(a, "-c") || !std::strcmp(a, "--ctx-size")) { if (!parse_int(a, v, 1, 1 << 16, &o->ctx.n_ctx)) return 2; }
  else if (!std::strcmp(a, "-b") || !std::strcmp(a, "--batch")) { if (!parse_int(a, v, 1, kMaxBatch, &o->ctx.n_batch)) return 2; }
  else if (!std::strcmp(a, "-t") || !std::strcmp(a, "--threads")) { if (!parse_int(a, v, 1, kMaxThreads, &o->ctx.n_threads)) return 2; }
  else if (!std::strcmp(a, "--rank")) { if (!parse_int(a, v, 1, 4096, &o->ctx.fixed_rank)) return 2; }
  else if (!std::strcmp(a, "--theta")) { if (!parse_float(a, v, &o->ctx.theta)) return 2; o->ctx.override_theta = true; }
  else if (!std::strcmp(a, "--alpha")) { if (!parse_float(a, v, &o->ctx.alpha)) return 2; o->ctx.override_alpha = true; }
  else if (!std::strcmp(a, "--attn-samples")) { if (!parse_int(a, v, 0, 65536, &o->ctx.attention_samples)) return 2; }
  else if (!std::strcmp(a, "--attn-seed")) {
    int seed = 0;
    if (!parse_int(a, v, 0, 2147483647, &seed)) return 2;
    o->ctx.attention_seed = (uint64_t)seed;
    o->ctx.override_seed = true;
  }
  else if (!std::strcmp(a, "--mem-budget")) { if (!parse_mem_budget(v, &o->ctx.mem_budget)) return 2; }
  else if (!std::strcmp(a, "--lora")) o->lora_path = v;
  else if (!std::strcmp(a, "--tokenizer")) o->tokenizer_path = v;
  else if (!std::strcmp(a, "--profile")) o->profile = v;
  else if (!std::strcmp(a, "--profiles")) o->profiles_file = v;
  else if (!std::strcmp(a, "--route")) {
    if (!std::strcmp(v, "auto")) o->ctx.route = RouteMode::automatic;
    else if (!std::strcmp(v, "classical")) o->ctx.route = RouteMode::all_classical;
    else if (!std::strcmp(v, "quantum")) o->ctx.route = RouteMode::all_quantum;
    else { std::fprintf(stderr, "qtf: --route expects auto, classical or quantum, got '%s'\n", v); return 2; }
  } else if (!std::strcmp(a, "--mem-copy")) {
    if (!std::strcmp(v, "auto")) o->ctx.mem_copy = kCopyAny;
    else if (!std::strcmp(v, "f32")) o->ctx.mem_copy = kCopyF32;
    else if (!std::strcmp(v, "q8")) o->ctx.mem_copy = kCopyQ8;
    else { std::fprintf(stderr, "qtf: --mem-copy expects auto, f32 or q8, got '%s'\n", v); return 2; }
  } else if (!std::strcmp(a, "--act-quant")) {
    if (!std::strcmp(v, "q8")) o->ctx.act_quant = ActQuant::q8;
    else if (!std::strcmp(v, "off")) o->ctx.act_quant = ActQuant::off;
    else if (!std::strcmp(v, "auto")) o->ctx.act_quant = ActQuant::automatic;
    else { std::fprintf(stderr, "qtf: --act-quant expects off, q8 or auto, got '%s'\n", v); return 2; }
  } else if (!std::strcmp(a, "--act")) {
    if (!std::strcmp(v, "quantum")) o->ctx.act_path = quantum::DaruanPath::quantum;
    else if (!std::strcmp(v, "fourier")) o->ctx.act_path = quantum::DaruanPath::fourier;
    else if (!std::strcmp(v, "spline")) o->ctx.act_path = quantum::DaruanPath::spline;
    else { std::fprintf(stderr, "qtf: --act expects quantum, fourier or spline, got '%s'\n", v); return 2; }
  }
  return kConsumed;
}

bool Args::is(const char* a, const char* b) const {
  return !std::strcmp(flag(), a) || (b && !std::strcmp(flag(), b));
}

bool Args::value(const char** v) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "qtf %s: %s needs a value\n", command, flag());
    return false;
  }
  *v = argv[++i];
  return true;
}

bool Args::int_value(long lo, long hi, int* out) {
  const char* v;
  return value(&v) && parse_int(flag(), v, lo, hi, out);
}

bool Args::float_value(float* out) {
  const char* v;
  return value(&v) && parse_float(flag(), v, out);
}

int parse_options(int argc, char** argv, const char* command, const char* usage, ModelOptions* mo,
                  const std::function<Parsed(Args&)>& own) {
  Args args{command, argc, argv};
  for (args.i = 1; args.i < argc; ++args.i) {
    const int shared = parse_shared_option(argc, argv, &args.i, mo, usage);
    if (shared == kConsumed) continue;
    if (shared != kNotShared) return shared;
    args.at = args.i;
    switch (own(args)) {
      case kParsed: break;
      case kBadValue: return 2;
      case kUnknown: std::fprintf(stderr, "qtf %s: unknown option '%s'\n%s", command, args.flag(), usage); return 2;
    }
  }
  return kConsumed;
}

bool load_model(const ModelOptions& o, host::LoadedModel* m) {
  if (!o.model_path) {
    std::fprintf(stderr, "qtf: no model given (-m FILE)\n");
    return false;
  }
  import::Options io;
  io.tokenizer_path = o.tokenizer_path;
  io.gguf_dequantize_f32 = o.gguf_f32;
  io.gguf_requantize_q4 = o.gguf_q4;
  Status st = m->load_any(o.model_path, o.mmap, io);
  if (!st.ok()) {
    std::fprintf(stderr, "qtf: cannot load model: %s\n", st.message());
    return false;
  }
  if (m->converted())
    std::fprintf(stderr, "qtf: converted %s (%s) in memory; `qtf convert %s OUT.qtf%s%s%s` makes a .qtf once\n",
                 o.model_path, import::source_name(m->source()), o.model_path, o.tokenizer_path ? " --tokenizer " : "",
                 o.tokenizer_path ? o.tokenizer_path : "", o.gguf_f32 ? " --gguf-f32" : o.gguf_q4 ? " --gguf-q4" : "");
  if (o.lora_path) {
    st = m->apply_adapter_file(o.lora_path, o.mmap);
    if (!st.ok()) {
      std::fprintf(stderr, "qtf: cannot apply the LoRA adapter: %s\n", st.message());
      return false;
    }
  }
  return true;
}

bool load_profiles(const ModelOptions& o, energy::Profiles* ps, const energy::Profile** chosen) {
  Status st = ps->load_builtin();
  if (st.ok() && o.profiles_file) {
    host::FileBytes f;
    st = f.open(o.profiles_file, false);
    if (st.ok()) st = ps->parse(reinterpret_cast<const char*>(f.data()), f.size());
  }
  if (!st.ok()) {
    std::fprintf(stderr, "qtf: energy profiles: %s\n", st.message());
    return false;
  }
  *chosen = ps->find(o.profile);
  if (!*chosen || (*chosen)->kind != energy::Kind::classical) {
    std::fprintf(stderr, "qtf: '%s' is not a classical energy profile; choose one of:", o.profile);
    for (int i = 0; i < ps->count; ++i)
      if (ps->items[i].kind == energy::Kind::classical) std::fprintf(stderr, " %s", ps->items[i].name);
    std::fprintf(stderr, "\n");
    return false;
  }
  return true;
}

}  // namespace qtf::cli
