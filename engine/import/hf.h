// Hugging Face model directories -> .qtf (docs/llama.md, "Hugging Face directories"): config.json
// (LlamaForCausalLM, MistralForCausalLM without a sliding window, Qwen2ForCausalLM), model.safetensors or
// its shards (F32, F16, BF16), tokenizer.json (BPE), tokenizer_config.json and generation_config.json.
// q and k rows are permuted from HF's rotate-half rotary layout into the engine's adjacent pairs.
// Anything the engine cannot run exactly is refused with one line naming it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "host/writer.h"
#include "import/common.h"
#include "import/json.h"

namespace qtf::import {

// What the importer takes from config.json.
struct HfConfig {
  std::string arch;  // architectures[0]
  bool qwen2 = false;
  int64_t d = 0, d_ff = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, context = 0;
  int64_t max_positions = 0;  // as the file says (context is capped at the engine's 65536)
  double eps = 0, rope_theta = 10000.0;
  bool tied = false;
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  int64_t bos_id = -1, eos_id = -1, pad_id = -1;  // config.json's own, when given
};

// config.json's text -> HfConfig (every key checked for presence, type and range).
Status hf_read_config(const char* text, size_t len, HfConfig* out);

// The tokenizer keys (docs/format.md, tokenizer.*) from tokenizer.json and, when given (non-null json),
// tokenizer_config.json and generation_config.json, for a model of cfg.vocab tokens.
Status hf_tokenizer_meta(const json::Value& tokenizer, const json::Value& tokenizer_config,
                         const json::Value& generation_config, const HfConfig& cfg, format::Writer* w);

// A whole directory -> a complete .qtf image (checksummed; the usual verifier opens it), built in place
// (import/common.h, Output); the vector form is a copy.
Status hf_dir_to_qtf(const char* dir, const Output& out);
Status hf_dir_to_qtf(const char* dir, std::vector<uint8_t>* out);

}  // namespace qtf::import
