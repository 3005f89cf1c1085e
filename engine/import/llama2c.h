// llama2.c checkpoints (karpathy/llama2.c): version 0 ("legacy": 7 x int32 header, a negative vocab size
// meaning a separate classifier, fp32 arrays, two RoPE tables run.c skips) and version 1 ("ak42" magic,
// 256-byte header). Version 2 (Q8_0 groups) is refused. The mapping is tools/convert/llama2c.py's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "import/common.h"

namespace qtf::import {

// True when the first bytes (n >= 28, or 256 for the "ak42" magic) look like a llama2.c header: the
// magic, or seven header values in range (detection; the converter checks everything again).
bool llama2c_header_plausible(const uint8_t* head, size_t n);

// Converts a checkpoint (data, size) into a .qtf image. tokenizer: llama2.c's tokenizer.bin bytes
// (import/llama2c_tokenizer.h: the spm tokenizer keys), or null for the stand-in char tokenizer (id i <->
// U+0100+i). source_name, tokenizer_name: the files' names, for provenance and messages.
// Built in place (import/common.h, Output); the vector form is a copy.
Status llama2c_to_qtf(const uint8_t* data, size_t size, const uint8_t* tokenizer, size_t tokenizer_size,
                      const char* source_name, const Output& out, const char* tokenizer_name = nullptr);
Status llama2c_to_qtf(const uint8_t* data, size_t size, const uint8_t* tokenizer, size_t tokenizer_size,
                      const char* source_name, std::vector<uint8_t>* out, const char* tokenizer_name = nullptr);

}  // namespace qtf::import
