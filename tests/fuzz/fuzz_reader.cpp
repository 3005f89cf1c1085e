// Fuzzes the .qtf reader/verifier: any bytes in; after a successful open every accessor is walked and
// every byte it hands out is read (so a bad bound shows as a sanitizer report, not a silent overread).
// Input: a whole file. It is opened as given, then again with file_size and checksum patched to match.
#include <vector>

#include "format/reader.h"
#include "fuzz_util.h"

using namespace qtf;
using namespace qtf::format;

namespace {

volatile uint8_t g_sink;

void touch(const void* p, uint64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  if (n == 0) return;
  g_sink = b[0];
  g_sink = b[n - 1];
}

void walk(const ModelFile& f) {
  uint64_t cur = 0;
  MetaEntry e;
  uint32_t n_meta = 0;
  while (f.next_meta(&cur, &e)) {
    ++n_meta;
    touch(e.key.data, e.key.size);
    int64_t i;
    double d;
    Str s;
    if (e.as_str(&s)) touch(s.data, s.size);
    (void)e.as_i64(&i);
    (void)e.as_f64(&d);
    // First and last elements (str_at walks from the start, so all of them would be quadratic).
    for (uint32_t k : {0u, e.count / 2, e.count ? e.count - 1 : 0u}) {
      (void)e.i64_at(k, &i);
      (void)e.f64_at(k, &d);
      if (e.str_at(k, &s)) touch(s.data, s.size);
    }
    fuzz::check(!e.i64_at(e.count, &i) && !e.str_at(e.count, &s));  // one past the end is refused
  }
  fuzz::check(n_meta == f.meta_count());
  cur = 0;
  TensorInfo t;
  uint32_t n_tensors = 0;
  while (f.next_tensor(&cur, &t)) {
    ++n_tensors;
    touch(t.name.data, t.name.size);
    fuzz::check(t.ndim >= 1 && t.ndim <= kMaxDims);
    uint64_t bytes = 0;
    fuzz::check(tensor_bytes(t.dtype, t.elements(), t.rows(), &bytes) && bytes == t.size);  // q8: scales too
    fuzz::check((t.row_scales != nullptr) == (t.dtype == DType::q8));
    fuzz::check(t.offset + t.size <= f.file_size());
    touch(t.data, t.size);
  }
  fuzz::check(n_tensors == f.tensor_count());
  fuzz::check(!f.find_tensor("", &t));
  int64_t i;
  double d;
  Str s;
  (void)f.get_i64("model.vocab_size", &i);
  (void)f.get_f64("model.alpha", &d);
  (void)f.get_str("tokenizer.type", &s);
  (void)f.get_i64_or("model.d_model", &i);
  (void)f.get_f64_or("model.ln_eps", &d);
}

void open_and_walk(const uint8_t* data, size_t size) {
  ModelFile f;
  if (f.open(data, size).ok()) walk(f);
  else fuzz::check(!f.is_open());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  open_and_walk(data, size);
  std::vector<uint8_t> fixed(data, data + size);
  fuzz::fix_header(&fixed);
  open_and_walk(fixed.data(), fixed.size());
  return 0;
}
