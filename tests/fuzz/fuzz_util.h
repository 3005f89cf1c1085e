// Shared by the fuzz harnesses: libFuzzer's entry point, the header fix-up that lets mutated files get
// past the checksum, and the tiny models the runtime harnesses use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "format/format.h"
#include "support/tiny_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace qtf::fuzz {

// Rewrites file_size (bytes 16..23) and the checksum (72..75) to match the buffer. Random mutations
// almost never carry a matching CRC-32, so without this the fuzzer would only ever test the checksum;
// the harnesses also open every input unpatched, which keeps the checksum path covered.
inline void fix_header(std::vector<uint8_t>* f) {
  if (f->size() < format::kHeaderSize) return;
  uint8_t* p = f->data();
  const uint64_t n = f->size();
  for (int i = 0; i < 8; ++i) p[16 + i] = (uint8_t)(n >> (8 * i));
  std::memset(p + format::kChecksumOffset, 0, 4);
  const uint32_t crc = format::crc32_update(0, p, f->size());
  for (int i = 0; i < 4; ++i) p[format::kChecksumOffset + i] = (uint8_t)(crc >> (8 * i));
}

// An invariant the engine promises was broken: crash loudly so the fuzzer saves the input.
inline void check(bool ok) {
  if (!ok) std::abort();
}

// The small models used as seeds and by the prompt harness: every feature on, and the dense baseline.
inline testing::TinyConfig tiny_config(int variant) {
  testing::TinyConfig c;
  c.vocab = 60;  // newline, space, punctuation, digits, A-Z: small files, so the fuzzer runs fast
  c.d = 8;
  c.n_heads = 2;
  c.d_ff = 16;
  c.context = 16;
  c.n_layers = 1;
  c.d_factors = {2, 4};
  c.ff_factors = {4, 4};
  c.tt_rank = 2;
  c.r_max = 2;
  c.n_qubits = 2;
  c.n_qlayers = 1;
  c.daruan_depth = 2;
  if (variant == 1) {  // dense baseline: no quantum parts
    c.tensorized = false;
    c.n_qubits = 0;
    c.activation = "gelu";
    c.tied = false;
  }
  if (variant == 2) {  // three TT factors, four qubits, fixed rank
    c.d_factors = {2, 2, 2};
    c.ff_factors = {2, 2, 4};
    c.n_qubits = 4;
    c.adaptive_rank = false;
    c.n_layers = 2;
  }
  return c;
}

}  // namespace qtf::fuzz
