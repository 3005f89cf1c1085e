// Fuzzes model binding: a file that passes verification is bound with Model::load (config checks, every
// tensor's shape, f16/i8 conversion), its tokenizer is built, and when it binds, a short context runs
// two tokens through the forward pass. Whatever the file says, the result is an error or finite work.
// Input: a whole file; file_size and checksum are patched to match before opening.
#include <vector>

#include "format/reader.h"
#include "fuzz_util.h"
#include "host/session.h"
#include "model/model.h"
#include "runtime/context.h"
#include "runtime/tokenizer/tokenizer.h"

using namespace qtf;

namespace {
constexpr size_t kMaxArena = 64u << 20;  // skip running configurations that need more than this
Model g_model;                            // large: kept off the stack
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  fuzz::fix_header(&bytes);
  format::ModelFile f;
  if (!f.open(bytes.data(), bytes.size()).ok()) return 0;

  host::AlignedBuffer convert;
  const size_t conv = g_model.convert_bytes(f);
  if (conv > kMaxArena || !convert.allocate(conv).ok()) return 0;
  if (!g_model.load(f, convert.data(), convert.size()).ok()) return 0;
  const ModelConfig& c = g_model.cfg;
  fuzz::check(c.vocab >= 1 && c.d >= 1 && c.n_layers >= 1 && c.d % c.n_heads == 0);
  fuzz::check(g_model.total_params() > 0);

  const size_t tok_bytes = Tokenizer::arena_bytes(f, c.vocab);
  host::AlignedBuffer tok_arena;
  Tokenizer tok;
  if (tok_bytes > 0 && tok_bytes <= kMaxArena && tok_arena.allocate(tok_bytes).ok() &&
      tok.init(f, c.vocab, tok_arena.data(), tok_arena.size()).ok()) {
    int32_t ids[16];
    int n = 0;
    (void)tok.encode("ROMEO: \xc3\xa9\xff", 10, ids, 16, &n, nullptr);
    for (int i = 0; i < n && i < 16; ++i) fuzz::check(ids[i] >= 0 && ids[i] < c.vocab);
  }

  ContextOptions o;
  o.n_ctx = c.context < 4 ? c.context : 4;
  const size_t need = Context::arena_bytes(g_model, o);
  host::AlignedBuffer arena;
  if (need == 0 || need > kMaxArena || !arena.allocate(need).ok()) return 0;
  Context ctx;
  fuzz::check(ctx.init(&g_model, o, arena.data(), arena.size()).ok());
  fuzz::check(ctx.eval(0).ok());
  if (ctx.n_ctx() >= 2) fuzz::check(ctx.eval(c.vocab - 1).ok());
  fuzz::check(!ctx.eval(c.vocab).ok());
  return 0;
}
