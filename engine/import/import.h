// Importers: models in other formats (GGUF, llama2.c checkpoints, Hugging Face directories) converted
// into a complete .qtf image in memory, which the normal verifier then opens (docs/llama.md, "Importing").
// Hosted (files, heap), above format/ and below host/session and the C API; one file per format.
#pragma once
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "format/reader.h"
#include "host/writer.h"

namespace qtf::import {

enum class Source { qtf, gguf, hf_dir, llama2c, unknown };

// What the file or directory at path holds, from its first bytes (magic or llama2.c's header) or, for a
// directory, a config.json inside it. unknown also for a path that cannot be opened.
Source detect(const char* path);
const char* source_name(Source s);  // "qtf", "GGUF", "Hugging Face directory", "llama2.c checkpoint", "unknown"

struct Options {
  const char* tokenizer_path = nullptr;  // llama2.c: its tokenizer.bin (else a stand-in char tokenizer)
  // GGUF: quantized matrices other than Q4_0 dequantized to f32 (exact) instead of requantized to q8
  // (the default: a quarter of the memory; docs/llama.md has the loss).
  bool gguf_dequantize_f32 = false;
  // GGUF: those the file stores in 4 bits or fewer requantized to q4 instead of q8 (half the memory, a
  // second rounding's error; its 5-8-bit ones stay q8; not with gguf_dequantize_f32).
  bool gguf_requantize_q4 = false;
};

// Options that contradict each other (gguf_dequantize_f32 with gguf_requantize_q4): one line naming path, for
// any source, so a .qtf loaded with them is refused as a GGUF would be. to_qtf checks them first.
Status check_options(const char* path, const Options& opt);

// Converts the model at path into a complete .qtf image in *out, verified by the format's reader (the
// model's configuration is checked when it is bound: host::LoadedModel). A .qtf is returned as it is.
// The image is allocated once at its final size and each tensor written once, straight into it; a
// mapped source's pages are dropped as they are read, so source and image are not both resident.
// opened (optional) receives the image as the reader opened it. Errors name the path and what is wrong,
// in one line; *out is empty after an error.
Status to_qtf(const char* path, const Options& opt, format::Image* out, format::ModelFile* opened = nullptr);
// The same into a vector (a copy: tests and tools).
Status to_qtf(const char* path, const Options& opt, std::vector<uint8_t>* out);

}  // namespace qtf::import
