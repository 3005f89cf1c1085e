// Quantization of a model file (docs/quantize.md): its matrices rewritten as q8 or f16. Host side (it
// allocates the new file).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "kernels/kernels.h"

namespace qtf::host {

enum class QuantType { q8, f16, q4, q3, q4s, q3s };
// How a q4 (or q3) block's scale is chosen (docs/quantize.md): `search` (the default) tries scales around the
// absmax one and keeps the least squared error; `absmax` is GGUF's Q4_0 rule, d = (the value of largest
// magnitude) / -8 (q3: / -4).
enum class Q4Scale { search, absmax };

struct QuantizeReport {
  size_t dense = 0, cores = 0;  // matrices rewritten: dense ones (linears, embeddings, head), TT cores
};

// Rewrites the f32 model in `data` (64-byte aligned, e.g. mapped) with its matrices (the tensors Model reads as Weights) in `type`:
// q8: dense matrices as int8 with one scale per row (dtype q8), TT cores as int8 with one scale per core
// (dtype i8); f16: all of them as IEEE half. Every other tensor and the metadata are copied unchanged.
// Errors: the input does not load as a model, a matrix of it is not f32, a value of any tensor is NaN
// or Inf, or (f16) a value overflows half precision; each names the tensor.
// q4: dense matrices as q4 blocks (GGUF Q4_0's layout, dtype q4) with scales chosen by `q4_scale`; the
// head (the token embeddings when tied) and TT cores as q8 does (int8, a scale per row / per core). Errors also: a
// matrix too large for q4's f16 scales, naming the tensor. q3: as q4 with q3 blocks (3.5 bits a value).
// q4s, q3s: as q4, q3 with the block scales coded per group of 8 blocks (quantize_sub_scaled).
Status quantize_model(const void* data, size_t size, QuantType type, std::vector<uint8_t>* out,
                      QuantizeReport* report, Q4Scale q4_scale = Q4Scale::search);

// One row of `cols` finite values as q4 blocks (q4_row_bytes(cols) bytes at `out`; the tail block padded
// with nibbles 8). False when a block's scale does not fit an f16 (|v| > 8 * 65504).
bool quantize_q4_row(const float* v, int64_t cols, Q4Scale how, uint8_t* out);
// The same as q3 blocks (q3_row_bytes(cols) bytes; padded with codes 4). False when |v| > 4 * 65504.
bool quantize_q3_row(const float* v, int64_t cols, Q4Scale how, uint8_t* out);
// A [rows, cols] matrix of finite values as a q4s (`q3` false) or q3s tensor's bytes (format::tensor_bytes
// of them at `out`; docs/format.md): 1. each row as quantize_q4_row (q3: quantize_q3_row) gives each
// block's f16 scale d_j; 2. per group of 8 blocks (row-major over the matrix), D = f16(max |d_j| / 31)
// and s_j = clamp(lround(d_j / D), -31, 31) (all 0 when D is 0); 3. each block's codes again at its
// coded scale f16(s_j * D). False when a row's values are too large for the f16 scales: *bad_row, the row.
bool quantize_sub_scaled(const float* v, int64_t rows, int64_t cols, bool q3, Q4Scale how, uint8_t* out,
                         int64_t* bad_row);

using ::qtf::quantize_i8;  // kernels.h: the core materialises q8 matrices with it too
using ::qtf::f32_to_f16;  // kernels.h: the loader rounds q4s / q3s block scales with it

}  // namespace qtf::host
