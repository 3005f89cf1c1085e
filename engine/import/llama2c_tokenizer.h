// llama2.c's tokenizer.bin -> the spm tokenizer keys of a .qtf file (docs/tokenizer.md). Hosted: the
// llama2.c importer (llama2c.cpp) calls it with the checkpoint's vocabulary size.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "host/writer.h"

namespace qtf::import {

// tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, that many bytes, for
// exactly `vocab` tokens (llama2.c's run.c reads it so). Pieces spell a space as ' ' (export.py replaced
// "▁"), BOS and EOS as "\n<s>\n" and "\n</s>\n", byte tokens as "<0xNN>". Writes tokenizer.type spm,
// tokens (with "▁" and <s>, </s> restored, escaped), scores, token_types, unk/bos/eos ids, add_bos 1 and
// add_space_prefix 1. Any truncation, bad length, non-finite score or trailing byte is one error line.
Status llama2c_tokenizer(const uint8_t* data, size_t size, int vocab, format::Writer* w);

}  // namespace qtf::import
