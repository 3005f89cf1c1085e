// What the importers share: the Llama block's model keys, token escaping, overflow-checked sizes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "format/reader.h"
#include "host/writer.h"

namespace qtf::import {

// A Llama-family block (docs/llama.md): rmsnorm, rotary (interleaved pairs), swiglu, GQA.
struct LlamaConfig {
  int64_t vocab = 0, d = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, d_ff = 0, context = 0;
  double rope_theta = 10000.0, rms_eps = 1e-5;
  bool tied = true;         // the classifier is tok_emb
  bool linear_bias = false; // every linear has X.b
};

// The model.* keys of a Llama block (as tools/train/llama.py's model_meta writes them, in that order).
void add_llama_config(const LlamaConfig& c, format::Writer* w);

// Token bytes as a tokenizer.tokens string (docs/tokenizer.md): `\` -> `\\`; spaces, control bytes and
// bytes that are not part of valid UTF-8 -> \xHH; everything else (UTF-8 characters) as it is.
std::string escape_token(const char* p, size_t n);

// Free text for a metadata string (provenance): as it is when valid UTF-8, else escaped as a token.
std::string utf8_or_escaped(const char* p, size_t n);

// The char tokenizer that stands in when a checkpoint carries none: id i is the character U+0100+i
// (surrogates skipped). vocab <= 1 << 20.
void add_stand_in_tokenizer(int64_t vocab, format::Writer* w);

// a * b and a + b, false on overflow of 64 bits.
inline bool mul_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool add_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// The last component of a path (for provenance: never the machine's directories).
std::string base_name(const char* path);

// Rotate-half rotary rows (Hugging Face's layout: row i pairs with row i + hd/2 in each head) -> the
// engine's adjacent pairs (rows 2i, 2i+1): the same rotation of the same pairs, so q . k and the model's
// outputs are unchanged (convert_hf_to_gguf.py's LlamaModel.permute). In each of rows / hd heads, new row
// 2i+j = old row j*hd/2 + i; rows of row_bytes bytes (any dtype), permuted in place. A bias is rows of one.
void permute_rotate_half(uint8_t* data, uint64_t rows, uint64_t hd, size_t row_bytes);

// Where an importer puts its result. The image is built in place: the importer reads and checks the
// whole source first (configuration, every tensor's type and shape), declares every tensor to a
// format::Writer, lets it allocate the image once at its final size (Writer::begin), then converts each
// tensor straight into its place (one write per value), calls tensor_done, and ends with seal_verified.
struct Output {
  format::Image* image = nullptr;      // the verified .qtf image (cleared on error)
  format::ModelFile* file = nullptr;   // optional: that image as the reader opened it (saves opening it again)
  // The source bytes are a read-only file mapping: each source tensor's whole pages are dropped from the
  // process once converted (drop_pages), so the mapped source and the image are never both resident.
  bool drop_source_pages = false;
  // GGUF: quantized matrices other than Q4_0 (Q8_0, Q4_1, Q5_x, Q2_K..Q6_K, IQ1..IQ4 kinds) dequantized to f32 (their
  // exact values, 4 bytes each) instead of requantized to q8 (an int8 per value, a scale per row).
  bool dequantize_f32 = false;
  // GGUF: those stored in 4 bits or fewer (Q4_1, Q2_K..Q4_K, the IQ1..IQ4 kinds) requantized to q4
  // (GGUF Q4_0 blocks with `qtf quantize`'s scale search: 4.5 bits a weight, half of q8's memory, for a
  // second rounding's error); the file's 5-8-bit ones stay q8.
  bool requantize_q4 = false;
};

// After tensor i of w is written in place: refused when a value is NaN or Inf (a damaged source, or a
// non-finite scale of a quantized block), naming the tensor; else folded into the checksum while in cache.
Status tensor_done(format::Writer* w, size_t i);

// The last step: the checksum written, then the image opened by the .qtf reader, the ordinary verifier
// (the importers hand out only images it opens); out->file receives it when asked.
Status seal_verified(format::Writer* w, const Output& out);

// Drops the whole pages inside [p, p + n) of a read-only file mapping from the process (madvise
// MADV_DONTNEED: they stay in the page cache and fault back in if read again). Only for mapped files:
// an anonymous mapping would read back zeros.
void drop_pages(const void* p, size_t n);

// An importer's result as a vector (a copy: tests and tools that want one).
Status to_vector(Status st, const format::Image& image, std::vector<uint8_t>* out);

}  // namespace qtf::import
