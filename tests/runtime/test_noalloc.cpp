// Decoding never touches the heap: malloc/calloc/realloc/aligned_alloc/posix_memalign are wrapped at
// link time (-Wl,--wrap) and operator new is replaced; any call during decode and sampling fails the test.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "host/quantize.h"
#include "host/session.h"
#include "support/tiny_model.h"

namespace {
std::atomic<bool> g_watch{false};
std::atomic<long> g_allocs{0};
void note() {
  if (g_watch.load(std::memory_order_relaxed)) g_allocs.fetch_add(1);
}
}  // namespace

extern "C" {
void* __real_malloc(size_t);
void* __real_calloc(size_t, size_t);
void* __real_realloc(void*, size_t);
void* __real_aligned_alloc(size_t, size_t);
int __real_posix_memalign(void**, size_t, size_t);
void* __wrap_malloc(size_t n) { note(); return __real_malloc(n); }
void* __wrap_calloc(size_t a, size_t b) { note(); return __real_calloc(a, b); }
void* __wrap_realloc(void* p, size_t n) { note(); return __real_realloc(p, n); }
void* __wrap_aligned_alloc(size_t a, size_t n) { note(); return __real_aligned_alloc(a, n); }
int __wrap_posix_memalign(void** p, size_t a, size_t n) { note(); return __real_posix_memalign(p, a, n); }
}

void* operator new(size_t n) {
  note();
  void* p = __real_malloc(n ? n : 1);
  if (!p) std::abort();
  return p;
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

using namespace qtf;

TEST_CASE("the watcher sees allocations (so the check below can fail)") {
  g_allocs = 0;
  g_watch = true;
  void* p = std::malloc(32);
  std::vector<int>* v = new std::vector<int>(10);
  g_watch = false;
  std::free(p);
  delete v;
  CHECK(g_allocs.load() >= 2);
}

TEST_CASE("no heap allocation while decoding and sampling, on every path") {
  // 2..5, 7, 8: the prompt as one block; 4, 5, 7, 8: on 3 threads; 6, 7, 8: weights quantized (q8, f16, q4);
  // 9, 10: dense q8 / q4 with act-quant (integer dot products: the activations quantised into the
  // arena), 9 on 3 threads
  for (int variant = 0; variant < 11; ++variant) {
    qtf::testing::TinyConfig c;
    c.context = 64;
    if (variant == 1 || variant == 5 || variant == 7 || variant == 8 || variant >= 9) {
      c.tensorized = false, c.n_qubits = 0, c.activation = "gelu";
    }
    std::vector<uint8_t> bytes = qtf::testing::make_tiny_model(c);
    if (variant >= 6) {
      host::AlignedBuffer f32;
      REQUIRE(f32.allocate(bytes.size()).ok());
      std::memcpy(f32.data(), bytes.data(), bytes.size());
      host::QuantizeReport rep;
      const host::QuantType type = variant == 6 || variant == 9 ? host::QuantType::q8
                                   : variant == 7                 ? host::QuantType::f16
                                                                  : host::QuantType::q4;
      REQUIRE(host::quantize_model(f32.data(), bytes.size(), type, &bytes, &rep).ok());
    }
    host::LoadedModel lm;
    REQUIRE(lm.load_memory(bytes.data(), bytes.size()).ok());
    ContextOptions o;
    if (variant == 2) { o.act_path = quantum::DaruanPath::spline; o.route = RouteMode::all_quantum; }
    if (variant == 3) { o.act_path = quantum::DaruanPath::quantum; o.fixed_rank = 2; }
    if (variant == 4 || variant == 5 || variant == 7 || variant == 8 || variant == 9) o.n_threads = 3;
    o.act_quant = variant >= 9 ? ActQuant::q8 : ActQuant::off;
    host::HostContext hc;
    host::HostSampler hs;
    REQUIRE(hc.init(lm, o).ok());
    REQUIRE(hs.init(lm.model().cfg.vocab, SamplerOptions{}).ok());
    const char prompt[] = "To be, or not";
    int32_t ids[64];
    int n = 0;
    g_allocs = 0;
    g_watch = true;
    REQUIRE(lm.tokenizer().encode(prompt, sizeof prompt - 1, ids, 64, &n, nullptr).ok());
    if (variant >= 2 && variant != 6) REQUIRE(hc.ctx().eval(ids, n).ok());
    else for (int i = 0; i < n; ++i) REQUIRE(hc.ctx().eval(ids[i]).ok());
    while (hc.ctx().n_past() < hc.ctx().n_ctx()) {  // generate until the context is full
      int t = hs.get().sample(hc.ctx().logits());
      hs.get().accept(t);
      REQUIRE(hc.ctx().eval(t).ok());
    }
    CHECK(hc.ctx().eval(1).code() == Err::context_full);  // error path allocates nothing either
    g_watch = false;
    INFO("variant " << variant);
    CHECK(g_allocs.load() == 0);
  }
}

TEST_CASE("no heap allocation while decoding a Llama-block or QLLM model (rotary, grouped kv, LoRA, memory, sampling)") {
  for (const char* name : {"llama2c_tiny", "llama_tt_rms_rope_swiglu_gqa_bias_untied", "qllm_tt_lora_rope_memory",
                           "qllm_sampled_attention", "qllm_byte_phase_memory_lora"}) {
    host::LoadedModel lm;
    REQUIRE(lm.load_file((std::string(QTF_SOURCE_DIR) + "/tests/fixtures/" + name + ".qtf").c_str()).ok());
    host::HostContext hc;
    host::HostSampler hs;
    REQUIRE(hc.init(lm, ContextOptions{}).ok());
    REQUIRE(hs.init(lm.model().cfg.vocab, SamplerOptions{}).ok());
    g_allocs = 0;
    g_watch = true;
    int t = 1;
    while (hc.ctx().n_past() < hc.ctx().n_ctx()) {  // the whole context
      REQUIRE(hc.ctx().eval(t).ok());
      t = hs.get().sample(hc.ctx().logits());
      hs.get().accept(t);
    }
    hc.ctx().reset();  // back to the memory prefix, and a prompt block through it
    const int32_t block[4] = {1, 2, 3, 4};
    REQUIRE(hc.ctx().eval(block, 4).ok());
    g_watch = false;
    INFO(name);
    CHECK(g_allocs.load() == 0);
  }
}
