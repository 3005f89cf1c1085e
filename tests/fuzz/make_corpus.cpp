// Writes the fuzz seed corpus (valid and damaged inputs) into OUTDIR/{files,gguf,text,prompt,request}:
//   files/  model files for fuzz_reader and fuzz_model; gguf/ for fuzz_gguf; text/ for fuzz_tokenizer;
//   prompt/ for fuzz_prompt; request/ qtf serve request bodies for fuzz_request.
// Generated rather than committed, so the seeds follow the format and the harness layouts as they change.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "host/writer.h"
#include "fuzz_util.h"
#include "support/gguf_writer.h"
#include "support/model_edit.h"
#include "support/safetensors_writer.h"

using namespace qtf;
using Bytes = std::vector<uint8_t>;

namespace {

std::filesystem::path g_out;
int g_written = 0;

void save(const char* dir, const std::string& name, const Bytes& b) {
  std::filesystem::create_directories(g_out / dir);
  std::ofstream(g_out / dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
  ++g_written;
}

Bytes str_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

void model_files() {
  const Bytes base = qtf::testing::make_tiny_model(fuzz::tiny_config(0));
  save("files", "valid_full.qtf", base);
  save("files", "valid_dense.qtf", qtf::testing::make_tiny_model(fuzz::tiny_config(1)));
  save("files", "valid_k3_q4.qtf", qtf::testing::make_tiny_model(fuzz::tiny_config(2)));
  qtf::testing::ModelEdit as_f16, as_i8, as_q8, as_q4, as_q3, as_q4s, as_q3s;
  as_f16.dtype = format::DType::f16;
  as_i8.dtype = format::DType::i8;
  as_q8.dtype = format::DType::q8;  // every tensor, vectors too: q8 where the loader converts it as well
  as_q4.dtype = format::DType::q4;  // the same for q4 (vectors and TT cores converted at load)
  as_q3.dtype = format::DType::q3;  // and q3 (matrices expanded to q4 blocks at load)
  as_q4s.dtype = format::DType::q4s;  // and q4s, q3s (likewise)
  as_q3s.dtype = format::DType::q3s;
  save("files", "valid_f16.qtf", qtf::testing::rewrite_model(base, as_f16));
  save("files", "valid_i8.qtf", qtf::testing::rewrite_model(base, as_i8));
  save("files", "valid_q8.qtf", qtf::testing::rewrite_model(base, as_q8));
  save("files", "valid_q4.qtf", qtf::testing::rewrite_model(base, as_q4));
  save("files", "valid_q3.qtf", qtf::testing::rewrite_model(base, as_q3));
  save("files", "valid_q4s.qtf", qtf::testing::rewrite_model(base, as_q4s));
  save("files", "valid_q3s.qtf", qtf::testing::rewrite_model(base, as_q3s));
  format::Writer empty;
  save("files", "valid_empty.qtf", empty.finish());

  // Damaged copies. "fixed" ones have a correct checksum, so the damage itself is what gets judged.
  Bytes b = base;
  b.resize(b.size() / 2);
  save("files", "bad_truncated.qtf", b);
  save("files", "bad_header_only.qtf", Bytes(base.begin(), base.begin() + format::kHeaderSize));
  b = base;
  b[0] = 'X';
  save("files", "bad_magic.qtf", b);
  b = base;
  b[8] = 2;
  fuzz::fix_header(&b);
  save("files", "bad_version.qtf", b);
  b = base;
  b[b.size() - 1] ^= 1;
  save("files", "bad_checksum.qtf", b);
  b = base;
  b.push_back(0);
  save("files", "bad_trailing_byte.qtf", b);
  b = base;
  b[56] += 8;  // data offset no longer a multiple of 64
  fuzz::fix_header(&b);
  save("files", "bad_misaligned.qtf", b);

  // Valid files that do not describe a usable model.
  qtf::testing::ModelEdit wide, nan, no_tokens;
  wide.meta = [](const std::string& k, format::Writer* w) {
    if (k != "model.d_model") return false;
    w->add_i64(k, 16);
    return true;
  };
  save("files", "bad_meta_contradicts_tensors.qtf", qtf::testing::rewrite_model(base, wide));
  nan.tensor = [](const std::string& name, std::vector<float>* v) {
    if (name == "blk.0.attn.q.b") (*v)[0] = std::nanf("");
  };
  save("files", "nan_weight.qtf", qtf::testing::rewrite_model(base, nan));
  no_tokens.meta = [](const std::string& k, format::Writer*) { return k == "tokenizer.tokens"; };
  save("files", "bad_no_tokenizer.qtf", qtf::testing::rewrite_model(base, no_tokens));
}

// GGUF files for fuzz_gguf: valid ones of each imported type and architecture, and a few damaged ones.
void gguf_files() {
  const struct { const char* name; uint32_t type, k_type; const char* arch; bool tied; } valid[] = {
      {"llama_f32.gguf", 0, 0, "llama", false}, {"llama_f16_q6k.gguf", 1, 14, "llama", true},
      {"qwen2_q8_0_q4k.gguf", 8, 12, "qwen2", false}, {"llama_q4_0_bf16.gguf", 2, 30, "llama", true},
      {"llama_iq4nl_q3k.gguf", 20, 11, "llama", false}, {"qwen2_f16_q2k.gguf", 1, 10, "qwen2", true},
      {"llama_f32_iq4xs.gguf", 0, 23, "llama", false}, {"llama_f16_iq3xxs.gguf", 1, 18, "llama", true},
      {"qwen2_q4_0_iq3s.gguf", 2, 21, "qwen2", false}, {"llama_f32_iq2xxs.gguf", 0, 16, "llama", false},
      {"llama_f32_iq2xs.gguf", 0, 17, "llama", true}, {"qwen2_f32_iq2s.gguf", 0, 22, "qwen2", false},
      {"llama_f16_iq1s.gguf", 1, 19, "llama", false}, {"llama_f32_iq1m.gguf", 0, 29, "llama", false}};
  for (const auto& v : valid) save("gguf", v.name, qtf::testing::tiny_llama_gguf(v.type, v.k_type, v.arch, v.tied));
  const Bytes base = qtf::testing::tiny_llama_gguf(8, 14);
  save("gguf", "truncated.gguf", Bytes(base.begin(), base.begin() + (long)base.size() / 2));
  Bytes v1 = base;
  v1[4] = 1;
  save("gguf", "v1.gguf", v1);
  qtf::testing::GgufWriter vocab;  // a vocab-only file: the tokenizer path
  vocab.str("tokenizer.ggml.model", "llama");
  vocab.strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x0A>", "\xe2\x96\x81" "a"});
  vocab.f32s("tokenizer.ggml.scores", {0, 0, 0, 0, -1});
  vocab.i32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 1});
  save("gguf", "vocab_spm.gguf", vocab.finish());
}

void text_inputs() {
  const std::string invalid_utf8 = "\xff\xfe\xc3\x28\xe2\x82\xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf end";
  const std::string long_text(3000, 'e');
  const struct { const char* name; std::string data; } seeds[] = {
      {"char_ascii", std::string("\x00\x40", 2) + "ROMEO: But soft, what light?\n"},
      {"char_utf8", std::string("\x00\x20", 2) + "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x98\x80"},
      {"char_invalid", std::string("\x00\xff", 2) + invalid_utf8},
      {"char_overflow", std::string("\x00\x04", 2) + "more than four tokens"},
      {"char_empty", std::string("\x00\x00", 2)},
      {"byte_invalid", std::string("\x01\xff", 2) + invalid_utf8},
      {"byte_nul", std::string("\x01\x10\x00\x00\x01", 5)},
      {"bpe_the", std::string("\x02\xff", 2) + "the thing is in the ring, the end"},
      {"bpe_long", std::string("\x02\x10", 2) + long_text},
      {"vocab_char", std::string("\x03\x40", 2) + "a\nb\n\xc3\xa9\n \nab\n"},
      {"vocab_bpe", std::string("\x04\x40", 2) + "a\nb\nab\n\\x20\n\\xff\n==\na b\nab ab"},
      {"vocab_bpe_bad_escape", std::string("\x04\x40", 2) + "a\n\\x\n==\na \\q"},
      {"spm_text", std::string("\x05\xff", 2) + "the thing \xe2\x96\x81the  \xc3\xa9\xe6\x97\xa5 " + invalid_utf8},
      {"spm_special", std::string("\x0f\xff", 2) + "<s>the<s><s> the"},  // 15: spm, parse_special
      {"spm_stack_long", std::string("\x2d\xff", 2) + long_text + " the " + long_text},  // 45: spm, stack only
      {"gpt2_text", std::string("\x06\xff", 2) + "I'm they're  the 123 !?  \n\n\xc3\xa9t\xc3\xa9 " + invalid_utf8},
      {"gpt2_stack_long", std::string("\x2e\x40", 2) + long_text},  // 46: gpt2, stack only
      {"norm_text", std::string("\x07\xff", 2) + "the thing  the \xc3\xa9 " + invalid_utf8},
      {"norm_bos", std::string("\x1b\x10", 2) + "the the"},  // 27: normalizer, add_special
      {"vocab_spm", std::string("\x08\x40", 2) + "<s>\n\xe2\x96\x81\na\nb\nab\n\xe2\x96\x81" "a\n<0x61>"},
      {"vocab_gpt2", std::string("\x09\x40", 2) + "a\nb\nab\n\\x20\n\\x20a\n==\na b\n\\x20 a"},
  };
  for (const auto& s : seeds) save("text", s.name, str_bytes(s.data));
}

Bytes prompt_input(uint8_t flags, int8_t rank, int8_t n_ctx, const std::string& prompt, std::vector<int32_t> ids,
                   float temperature = 0.8f, float top_p = 0.95f, float penalty = 1.1f, int8_t top_k = 40) {
  Bytes b(26, 0);
  b[0] = flags;
  b[1] = (uint8_t)rank;
  b[2] = (uint8_t)n_ctx;
  b[3] = (uint8_t)prompt.size();
  const float theta = 0.3f, alpha = 1.f;
  std::memcpy(&b[4], &theta, 4);
  std::memcpy(&b[8], &alpha, 4);
  std::memcpy(&b[12], &temperature, 4);
  std::memcpy(&b[16], &top_p, 4);
  std::memcpy(&b[20], &penalty, 4);
  b[24] = (uint8_t)top_k;
  b[25] = 16;
  for (char ch : prompt) b.push_back((uint8_t)ch);
  for (int32_t id : ids)
    for (int k = 0; k < 4; ++k) b.push_back((uint8_t)((uint32_t)id >> (8 * k)));
  return b;
}

void prompt_inputs() {
  // flags: bit 0 model (1 = dense), bits 1-2 route, bits 3-4 act path, bit 5/6 theta/alpha override.
  save("prompt", "auto_fourier", prompt_input(1 << 3, 0, 0, "ROMEO:", {5, 9, 2}));
  save("prompt", "quantum_route_spline", prompt_input(2 << 1 | 2 << 3, 0, 8, "hello", {1, 2, 3, 4}));
  save("prompt", "classical_quantum_act", prompt_input(1 << 1, 2, 4, "abc", {10, 20, 30, 40, 50}));
  save("prompt", "dense", prompt_input(1, 0, 0, "The", {1, 1, 1}));
  save("prompt", "bad_ids", prompt_input(1 << 3, 0, 0, "x", {-1, 95, 96, 1 << 30, 3}, 0.f));
  save("prompt", "full_then_reset", prompt_input(1 << 3, 1, 2, "abcdef", {1, 2, 3, 4, 5, 6}));
  save("prompt", "nan_options", prompt_input(3 << 5 | 1 << 3, 0, 0, "q", {7, 8}, std::nanf(""), -1.f, 0.f, -5));
  save("prompt", "invalid_utf8", prompt_input(1 << 3, 0, 0, "\xff\xc3(\xe2\x82", {4}));
}

// qtf serve request bodies for fuzz_request: byte 0 picks the endpoint and chat form (fuzz_request.cpp).
void request_inputs() {
  auto req = [](const char* name, uint8_t head, const std::string& body) {
    save("request", name, str_bytes(std::string(1, (char)head) + body));
  };
  req("completion", 0, R"({"prompt":"ROMEO:","max_tokens":8,"temperature":0.7,"top_p":0.9,"stop":["\n\n","x"]})");
  req("completion_everything", 0x40,
      R"({"prompt":[[5,6,7]],"n":3,"seed":7,"logprobs":5,"logit_bias":{"5":-100,"9":3.5},"presence_penalty":1,)"
      R"("frequency_penalty":-0.5,"top_k":4,"min_p":1,"repeat_penalty":1.1,"repeat_last_n":8,"echo":false,)"
      R"("stream":true,"stream_options":{"include_usage":true},"response_format":{"type":"text"},"best_of":3})");
  req("chat", 1, R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}],"max_tokens":4})");
  req("chat_parts_chatml", 1 | 1 << 3,
      R"({"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},)"
      R"({"role":"assistant","content":null},{"role":"user","content":"q"}],"logprobs":true,"top_logprobs":20})");
  req("chat_llama2", 1 | 2 << 3, R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})");
  req("tokenize", 2, R"({"content":"ROMEO: \u00e9","add_special":true})");
  req("detokenize", 3, R"({"tokens":[1,2,3,59]})");
  req("apply_template", 4 | 5 << 3, R"({"messages":[{"role":"user","content":"x"}]})");
  req("nested_stop", 0, R"({"prompt":"a","stop":)" + std::string(2000, '[') + std::string(2000, ']') + "}");
  req("nested_object", 1, R"({"messages":)" + std::string(3000, '{') + "}");
  req("bad_numbers", 0, R"({"prompt":"a","max_tokens":1e400,"seed":18446744073709551615,"top_p":-0})");
}

}  // namespace

// Safetensors files (fuzz_safetensors) and JSON texts (fuzz_json: the reader, config.json and
// tokenizer.json mappings); the real TinyStories-656K files are replayed from tests/fixtures as well.
void import_inputs() {
  using qtf::testing::StEntry;
  const float f[4] = {1, -2, 0.5f, 3};
  const uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x4200};
  const std::vector<StEntry> es = {{"w", "F32", {2, 2}, Bytes((const uint8_t*)f, (const uint8_t*)f + 16)},
                                   {"h", "F16", {4}, Bytes((const uint8_t*)h, (const uint8_t*)h + 8)},
                                   {"b", "BF16", {1, 2}, Bytes((const uint8_t*)h, (const uint8_t*)h + 4)},
                                   {"i", "I64", {1}, Bytes(8, 7)}};
  const Bytes st = qtf::testing::make_safetensors(es, "{\"format\":\"pt\"}");
  save("safetensors", "valid.safetensors", st);
  save("safetensors", "valid_empty.safetensors", qtf::testing::make_safetensors({}, ""));
  save("safetensors", "bad_truncated.safetensors", Bytes(st.begin(), st.begin() + (long)st.size() - 3));
  Bytes b = st;
  b[0] = 0xFF, b[7] = 0x7F;  // a header length far past the file
  save("safetensors", "bad_header_length.safetensors", b);
  const std::string overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  b.assign(8, 0);
  b[0] = (uint8_t)overlap.size();
  b.insert(b.end(), overlap.begin(), overlap.end());
  b.resize(b.size() + 16, 0);
  save("safetensors", "bad_overlap.safetensors", b);

  const char* texts[][2] = {
      {"config_llama.json",
       "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_act\":\"silu\",\"hidden_size\":64,\"intermediate_size\":96,"
       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":300,"
       "\"max_position_embeddings\":128,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"rope_scaling\":null,"
       "\"tie_word_embeddings\":false,\"attention_bias\":true}"},
      {"config_qwen2.json",
       "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_act\":\"silu\",\"hidden_size\":64,\"intermediate_size\":96,"
       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300,\"max_position_embeddings\":131072,"
       "\"rms_norm_eps\":1e-6,\"use_sliding_window\":false,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}"},
      {"tokenizer_spm.json",
       "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
       "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},"
       "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]},\"pre_tokenizer\":null,"
       "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}]},"
       "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
       "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"a\":2,\"b\":3,\"ab\":4,\"\u2581\":5,\"<0x0A>\":6},\"merges\":[\"a b\",[\"\u2581\",\"ab\"]]},"
       "\"bos_token\":{\"content\":\"<s>\"},\"add_bos_token\":true,\"chat_template\":\"{{ x }}\"}"},
      {"tokenizer_bytelevel.json",
       "{\"added_tokens\":[{\"id\":4,\"content\":\"<|endoftext|>\",\"special\":true}],\"normalizer\":null,"
       "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
       "\"model\":{\"type\":\"BPE\",\"vocab\":{\"\u0120\":0,\"a\":1,\"\u0120a\":2,\"\u010a\":3},\"merges\":[\"\u0120 a\"]},"
       "\"eos_token\":\"<|endoftext|>\",\"chat_template\":[{\"name\":\"default\",\"template\":\"t\"}]}"},
      {"escapes.json", "[\"\\ud83d\\ude00\", \"\\u0000\\n\", -0.0, 1e308, 9223372036854775807, {\"\":[[[]]]}]"},
      {"bad_surrogate.json", "[\"\\ud800\"]"},
      {"bad_deep.json", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]"},
  };
  for (const auto& t : texts) save("json", t[0], str_bytes(t[1]));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_corpus OUTDIR\n");
    return 2;
  }
  g_out = argv[1];
  model_files();
  gguf_files();
  text_inputs();
  prompt_inputs();
  request_inputs();
  import_inputs();
  std::printf("fuzz_corpus: wrote %d seeds to %s\n", g_written, argv[1]);
  return 0;
}
