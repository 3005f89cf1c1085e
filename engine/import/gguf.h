// GGUF (llama.cpp's model file), versions 2 and 3, little-endian. Every count, length, dimension, offset
// and size is checked against the file's size (overflow-safe) before anything is allocated or read.
// Imported: the llama architecture (Llama, Mistral-style) and qwen2 (q/k/v biases; its rotate-half q/k
// rows are permuted to the engine's interleaved pairs); tensor types F32, F16 (kept as f16), Q4_0 (kept:
// qtf's q4 is its block layout), BF16 (widened to f32), Q8_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS (matrices requantized to q8 with a scale per row, to q4 with
// Output::requantize_q4 where the file has 4 bits or fewer, or dequantized to f32 with
// Output::dequantize_f32; vectors to f32); llama.cpp's "llama" (SentencePiece) and "gpt2" tokenizers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "host/writer.h"
#include "import/common.h"

namespace qtf::import {

// ggml type ids of the tensor types qtf imports.
enum GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ2_K = 10, kQ3_K = 11, kQ4_K = 12,
  kQ5_K = 13, kQ6_K = 14, kIQ2_XXS = 16, kIQ2_XS = 17, kIQ3_XXS = 18, kIQ1_S = 19, kIQ4_NL = 20, kIQ3_S = 21,
  kIQ2_S = 22, kIQ4_XS = 23, kIQ1_M = 29, kBF16 = 30
};
const char* ggml_type_name(uint32_t type);  // "Q4_K", ...; "unknown" past ggml's table

// Values per block and bytes per block of an imported type (block 0 for a type qtf does not import).
void ggml_block(uint32_t type, uint32_t* values, uint32_t* bytes);

// Dequantizes n values (a multiple of the type's block) from src to f32 (the layouts of ggml-quants.c;
// F16 and BF16 widened exactly). False for a type qtf does not import.
bool dequantize(uint32_t type, const uint8_t* src, uint64_t n, float* dst);

// The whole model as a .qtf image, built in place (import/common.h, Output). source_name: the file's name
// for provenance.
Status gguf_to_qtf(const uint8_t* data, size_t size, const char* source_name, const Output& out);
// The same into a vector (a copy).
Status gguf_to_qtf(const uint8_t* data, size_t size, const char* source_name, std::vector<uint8_t>* out);

// Only its tokenizer (a vocab-only GGUF too): the tokenizer.* keys into w; *vocab = the token count.
Status gguf_tokenizer(const uint8_t* data, size_t size, format::Writer* w, int* vocab);

}  // namespace qtf::import
