// Firmware example for a Cortex-M7: a model in flash (a parity fixture, fixture.h) is verified and used
// in place, its outputs are checked against the Python reference, and it generates a few tokens.
// No heap, no file system: every buffer is static. Output goes through semihosting; the exit status is
// 0 only when every check passed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "fixture.h"
#include "format/reader.h"
#include "runtime/context.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "pass" : "FAIL", what);
  if (!ok) ++failures;
}

// The engine's memory, sized for the fixture; each init() checks that its buffer is large enough.
// The Model is constructed at run time in zeroed storage: as a plain static, its default member values
// would place all of it (22 KB) in .data, costing that much flash for the initial image too.
alignas(qtf::Model) unsigned char model_storage[sizeof(qtf::Model)];
// 52 KiB (the context needs 50,688 bytes): it also holds, made once at creation, the TT contraction
// plan of every linear at every rank, the encoder and feature-state gates. The TT cores are not packed
// into it (pack_tt = false below): that copy (36 KiB here) buys decode speed a hosted CPU can afford.
alignas(64) unsigned char context_arena[52 * 1024];
alignas(64) unsigned char tokenizer_arena[4 * 1024];
alignas(64) unsigned char sampler_arena[2 * 1024];
alignas(64) unsigned char ram_copy[64 * 1024];  // for the corruption check

// The reader must reject a damaged image: flip one byte of a RAM copy.
void check_corruption_detected() {
  check(fixture::kModelSize <= sizeof ram_copy, "model fits the RAM copy");
  if (fixture::kModelSize > sizeof ram_copy) return;
  std::memcpy(ram_copy, fixture::kModel, fixture::kModelSize);
  ram_copy[fixture::kModelSize / 2] ^= 0x40;
  qtf::format::ModelFile bad;
  qtf::Status st = bad.open(ram_copy, fixture::kModelSize);
  std::printf("  corrupted copy: %s\n", st.message());
  check(st.code() == qtf::Err::bad_checksum, "a flipped byte is reported as a bad checksum");
}

// Runs the fixture's tokens and compares with the reference (same tolerances as tests/runtime/test_parity).
void check_parity(qtf::Context* ctx) {
  float worst_logit = 0, worst_entropy = 0;
  int decisions_wrong = 0;
  bool evals_ok = true;
  ctx->reset();
  for (int t = 0; t < fixture::kTokens && evals_ok; ++t) {
    qtf::Status st = ctx->eval(fixture::kTokenIds[t]);
    if (!st.ok()) std::printf("  eval: %s\n", st.message());
    evals_ok = st.ok();
    for (int v = 0; evals_ok && v < fixture::kVocab; ++v)
      worst_logit = std::fmax(worst_logit, std::fabs(ctx->logits()[v] - fixture::kLogits[t * fixture::kVocab + v]));
    const qtf::TokenStats& s = ctx->stats();
    for (int l = 0; evals_ok && l < fixture::kLayers; ++l) {
      const int i = t * fixture::kLayers + l;
      worst_entropy = std::fmax(worst_entropy, std::fabs(s.layer[l].S - fixture::kEntropy[i]));
      decisions_wrong += s.layer[l].rank != fixture::kRank[i] || s.layer[l].quantum != fixture::kQuantum[i];
    }
  }
  check(evals_ok, "the fixture's tokens run");
  std::printf("  max |logit - reference| = %.2e, max |S - reference| = %.2e, rank/route mismatches: %d\n",
              static_cast<double>(worst_logit), static_cast<double>(worst_entropy), decisions_wrong);
  check(worst_logit <= fixture::kLogitTolerance, "logits match the Python reference");
  check(worst_entropy <= 1e-4f, "entanglement entropies match the reference");
  check(decisions_wrong == 0, "every rank and route matches the reference");
}

constexpr int kMaxTokens = 64;

// Greedy generation after `prompt` until the context is full; writes the new token ids to
// out[kMaxTokens] and returns how many, or -1 on an error.
int generate(qtf::Context* ctx, qtf::Sampler* sampler, const qtf::Tokenizer& tok, const char* prompt, int* out,
             bool print) {
  int32_t ids[kMaxTokens];
  int n = 0, n_new = 0;
  qtf::Status st = tok.encode(prompt, std::strlen(prompt), ids, kMaxTokens, &n, nullptr);
  ctx->reset();
  sampler->reset();
  for (int i = 0; st.ok() && i < n; ++i) st = ctx->eval(ids[i]);
  if (print) std::printf("  \"%s", prompt);
  while (st.ok() && n_new < kMaxTokens) {
    int id = sampler->sample(ctx->logits());
    sampler->accept(id);
    out[n_new++] = id;
    qtf::format::Str text = tok.token_text(id);
    if (print) std::printf("%.*s", static_cast<int>(text.size), text.data);
    if (ctx->n_past() == ctx->n_ctx()) break;
    st = ctx->eval(id);
  }
  if (print) std::printf("\"\n");
  if (!st.ok()) std::printf("  generate: %s\n", st.message());
  return st.ok() ? n_new : -1;
}

}  // namespace

int main() {
  qtf::Model& model = *new (model_storage) qtf::Model();
  std::printf("qtf firmware: fixture %s, %u bytes in flash at %p\n", fixture::kName,
              static_cast<unsigned>(fixture::kModelSize), static_cast<const void*>(fixture::kModel));

  qtf::format::ModelFile file;
  qtf::Status st = file.open(fixture::kModel, fixture::kModelSize);
  if (!st.ok()) std::printf("  open: %s\n", st.message());
  check(st.ok(), "model verifies in place (header, CRC-32, metadata, tensor table)");
  check_corruption_detected();
  if (st.ok()) st = model.load(file, nullptr, 0);
  if (!st.ok()) std::printf("  load: %s\n", st.message());
  check(st.ok(), "model loads, weights bound in place (zero copy)");

  qtf::ContextOptions opt;
  opt.n_batch = 1;  // token by token: no prompt block buffers in the small arena
  opt.pack_tt = false;  // TT cores read in place from flash: no packed copy in the small RAM arena
  opt.mem_budget = 0;   // no dense copies of TT linears either (execution by cost): the RAM is the limit
  qtf::Context ctx;
  qtf::Tokenizer tok;
  qtf::Sampler sampler;
  qtf::SamplerOptions greedy;
  greedy.temperature = 0;
  if (st.ok()) {
    std::printf("  context arena: %u of %u bytes\n", static_cast<unsigned>(qtf::Context::arena_bytes(model, opt)),
                static_cast<unsigned>(sizeof context_arena));
    st = ctx.init(&model, opt, context_arena, sizeof context_arena);
    if (st.ok()) st = tok.init(file, model.cfg.vocab, tokenizer_arena, sizeof tokenizer_arena);
    if (st.ok()) st = sampler.init(model.cfg.vocab, greedy, sampler_arena, sizeof sampler_arena);
    if (!st.ok()) std::printf("  init: %s\n", st.message());
    check(st.ok(), "context, tokenizer and sampler fit their static buffers");
  }
  if (st.ok()) {
    check_parity(&ctx);
    int first[kMaxTokens], again[kMaxTokens];
    int n = generate(&ctx, &sampler, tok, "ROMEO:", first, true);
    bool same = n > 0 && generate(&ctx, &sampler, tok, "ROMEO:", again, false) == n &&
                std::memcmp(first, again, n * sizeof(int)) == 0;
    check(same, "greedy generation fills the context and repeats exactly");
  }

  std::printf("qtf firmware: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
