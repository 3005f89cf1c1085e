// engine/import/hf: Hugging Face directories. TinyStories-656K (tests/fixtures/tinystories-656k/, its
// original files) imported in memory must give the logits of the numpy HF-convention reference
// (tools/convert/hf_reference.py, reference.json) to 1e-4; config.json and tokenizer.json are checked
// key by key, and what the engine cannot run is refused with one line.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "format/reader.h"
#include "host/session.h"
#include "import/common.h"
#include "import/hf.h"
#include "import/import.h"
#include "import/json.h"
#include "import/safetensors.h"
#include "support/safetensors_writer.h"

using namespace qtf;
using namespace qtf::import;

namespace {

const std::string kDir = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/tinystories-656k";

std::string config_error(const std::string& text) {
  HfConfig c;
  Status s = hf_read_config(text.data(), text.size(), &c);
  return s.ok() ? "" : s.message();
}

std::string read_text(const std::string& path) {
  std::vector<uint8_t> b;
  REQUIRE_MESSAGE(qtf::testing::read_file(path, &b), "cannot read ", path);
  return std::string(b.begin(), b.end());
}

// The TinyStories config with `from` replaced by `to` (which must occur).
std::string edited_config(const std::string& from, const std::string& to) {
  std::string t = read_text(kDir + "/config.json");
  size_t at = t.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  return t.replace(at, from.size(), to);
}

// A copy of the TinyStories directory in a fresh temporary folder, with files replaced.
struct TempDir {
  std::string top, path;  // path = top/tinystories-656k: the name the provenance records, as the original's
  std::vector<std::string> files;
  TempDir() {
    char tmpl[] = "/tmp/qtf_hf_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    top = tmpl;
    path = top + "/tinystories-656k";
    REQUIRE(mkdir(path.c_str(), 0700) == 0);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                          "generation_config.json"}) {
      std::vector<uint8_t> b;
      REQUIRE(qtf::testing::read_file(kDir + "/" + f, &b));
      put(f, b);
    }
  }
  void put(const std::string& name, const std::vector<uint8_t>& b) {
    REQUIRE(qtf::testing::write_file(path + "/" + name, b));
    if (std::find(files.begin(), files.end(), name) == files.end()) files.push_back(name);
  }
  void put(const std::string& name, const std::string& s) { put(name, std::vector<uint8_t>(s.begin(), s.end())); }
  void remove(const std::string& name) { unlink((path + "/" + name).c_str()); }
  std::string import_error() const {
    std::vector<uint8_t> img;
    Status s = hf_dir_to_qtf(path.c_str(), &img);
    return s.ok() ? "" : s.message();
  }
  ~TempDir() {
    for (const std::string& f : files) unlink((path + "/" + f).c_str());
    rmdir(path.c_str());
    rmdir(top.c_str());
  }
};

}  // namespace

TEST_CASE("import: rotate-half rows to adjacent pairs (LlamaModel.permute)") {
  // 2 heads of 6 rows, 2 bytes a row: new row 2i+j of a head = old row j*3+i.
  std::vector<uint8_t> rows;
  for (int r = 0; r < 12; ++r) rows.insert(rows.end(), {(uint8_t)r, (uint8_t)(100 + r)});
  permute_rotate_half(rows.data(), 12, 6, 2);
  const int want[12] = {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11};
  for (int r = 0; r < 12; ++r) {
    CHECK(rows[2 * r] == want[r]);
    CHECK(rows[2 * r + 1] == 100 + want[r]);
  }
}

TEST_CASE("hf: config.json: TinyStories-656K, then missing keys, wrong types, unsupported models") {
  HfConfig c;
  const std::string text = read_text(kDir + "/config.json");
  REQUIRE(hf_read_config(text.data(), text.size(), &c).ok());
  CHECK(c.arch == "LlamaForCausalLM");
  CHECK((c.d == 128 && c.d_ff == 384 && c.n_layers == 2 && c.n_heads == 8 && c.n_kv_heads == 4));
  CHECK((c.vocab == 2048 && c.context == 512 && c.eps == 1e-6 && c.rope_theta == 10000.0 && c.tied));
  CHECK((!c.qkv_bias && !c.o_bias && !c.mlp_bias));
  CHECK((c.bos_id == 1 && c.eos_id == 2 && c.pad_id == -1));

  CHECK(config_error(edited_config("\"hidden_size\": 128,", "")) == "config.json: 'hidden_size' is missing");
  CHECK(config_error(edited_config("\"hidden_size\": 128", "\"hidden_size\": \"128\"")) ==
        "config.json: 'hidden_size' must be an integer (found a string)");
  CHECK(config_error(edited_config("\"hidden_size\": 128", "\"hidden_size\": 128.5")) ==
        "config.json: 'hidden_size' must be an integer (found a fraction)");
  CHECK(config_error(edited_config("\"hidden_size\": 128", "\"hidden_size\": -128")) ==
        "config.json: 'hidden_size' = -128 is outside [1, 16384]");
  CHECK(config_error(edited_config("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1e9")) ==
        "config.json: 'num_hidden_layers' must be an integer (found a fraction)");
  CHECK(config_error(edited_config("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": [1]")) ==
        "config.json: 'rms_norm_eps' must be a number (found an array)");
  CHECK(config_error(edited_config("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 0")) ==
        "config.json: 'rms_norm_eps' = 0 is outside (0, 1)");
  CHECK(config_error(edited_config("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1")) ==
        "config.json: 'tie_word_embeddings' must be true or false (found a number)");
  CHECK(config_error(edited_config("\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"")) ==
        "config.json: architecture 'GPT2LMHeadModel' is not supported (LlamaForCausalLM, MistralForCausalLM, "
        "Qwen2ForCausalLM)");
  CHECK(config_error(edited_config("[\n    \"LlamaForCausalLM\"\n  ]", "[]")) ==
        "config.json: 'architectures' must list one architecture");
  CHECK(config_error(edited_config("\"silu\"", "\"gelu\"")) ==
        "config.json: hidden_act 'gelu' is not supported (silu only)");
  CHECK(config_error(edited_config("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}")) ==
        "config.json: rope_scaling 'linear' is not supported (the engine has plain rotary positions)");
  CHECK(config_error(edited_config("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\"}")) ==
        "config.json: rope_scaling 'llama3' is not supported (the engine has plain rotary positions)");
  CHECK(config_error(edited_config("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"default\"}")).empty());
  CHECK(config_error(edited_config("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3")) ==
        "config.json: num_attention_heads 8 is not a multiple of num_key_value_heads 3");
  CHECK(config_error(edited_config("\"num_attention_heads\": 8", "\"num_attention_heads\": 6")) ==
        "config.json: hidden_size 128 is not a multiple of num_attention_heads 6");
  CHECK(config_error(edited_config("\"vocab_size\": 2048", "\"vocab_size\": 2048, \"head_dim\": 32")) ==
        "config.json: head_dim 32 differs from hidden_size / num_attention_heads = 16");
  CHECK(config_error(edited_config("\"vocab_size\": 2048", "\"vocab_size\": 2048, \"partial_rotary_factor\": 0.5")) ==
        "config.json: partial_rotary_factor 0.5 is not supported");
  CHECK(config_error(edited_config("\"vocab_size\": 2048", "\"vocab_size\": 2048, \"vocab_size\": 2"))
            .find("config.json: duplicate key at byte ") == 0);
  CHECK(config_error("[]") == "config.json: not a JSON object");
  CHECK(config_error("{") == "config.json: expected a string key at byte 1");
  // Llama with attention biases; Qwen2 (q/k/v biases always); its sliding window refused.
  REQUIRE(config_error(edited_config("\"attention_bias\": false", "\"attention_bias\": true")).empty());
  std::string qwen = edited_config("\"LlamaForCausalLM\"", "\"Qwen2ForCausalLM\"");
  REQUIRE(hf_read_config(qwen.data(), qwen.size(), &c).ok());
  CHECK((c.qwen2 && c.qkv_bias && !c.o_bias && !c.mlp_bias));
  qwen.replace(qwen.find("\"use_cache\""), 11, "\"use_sliding_window\": true, \"use_cache\"");
  CHECK(config_error(qwen) == "config.json: use_sliding_window is not supported");
  // A context beyond the engine's 65536 is capped (the model still runs, on a shorter window).
  const std::string long_ctx = edited_config("512", "131072");
  REQUIRE(hf_read_config(long_ctx.data(), long_ctx.size(), &c).ok());
  CHECK((c.context == 65536 && c.max_positions == 131072));
}

namespace {

// Imports dir in memory, runs reference.json's tokens from position 0 and returns the largest
// |logit - reference| over its positions.
double reference_gap(const std::string& dir, int* checked_out) {
  std::vector<uint8_t> img;
  Status s = hf_dir_to_qtf(dir.c_str(), &img);
  REQUIRE_MESSAGE(s.ok(), s.message());
  host::LoadedModel lm;
  s = lm.load_memory(img.data(), img.size());
  REQUIRE_MESSAGE(s.ok(), s.message());
  const ModelConfig& c = lm.model().cfg;
  json::Document ref;
  const std::string text = read_text(dir + "/reference.json");
  REQUIRE(ref.parse(text.data(), text.size(), "reference.json").ok());
  json::Value tokens = ref.root().get("tokens"), positions = ref.root().get("positions"), logits = ref.root().get("logits");
  REQUIRE(tokens.size() >= 16);
  host::HostContext hc;
  REQUIRE(hc.init(lm, ContextOptions()).ok());
  double worst = 0;
  int checked = 0;
  json::Value pos = positions.first(), row = logits.first();
  int t = 0;
  for (json::Value tok = tokens.first(); tok.exists(); tok = tok.next(), ++t) {
    int64_t id = 0;
    REQUIRE(tok.integer(&id));
    REQUIRE(hc.ctx().eval((int)id).ok());
    int64_t p = -1;
    if (!pos.exists() || !pos.integer(&p) || p != t) continue;
    REQUIRE(row.size() == (size_t)c.vocab);
    const float* l = hc.ctx().logits();
    int v = 0;
    for (json::Value x = row.first(); x.exists(); x = x.next(), ++v) worst = std::fmax(worst, std::fabs(l[v] - x.number()));
    ++checked;
    pos = pos.next();
    row = row.next();
  }
  CHECK(checked == (int)positions.size());
  *checked_out = checked;
  return worst;
}

}  // namespace

TEST_CASE("hf: TinyStories-656K imported in memory gives the HF-convention reference logits") {
  std::vector<uint8_t> img;
  REQUIRE(hf_dir_to_qtf(kDir.c_str(), &img).ok());
  host::LoadedModel lm;
  REQUIRE(lm.load_memory(img.data(), img.size()).ok());
  const ModelConfig& c = lm.model().cfg;
  CHECK((c.vocab == 2048 && c.d == 128 && c.n_layers == 2 && c.n_heads == 8 && c.n_kv_heads == 4 && c.d_ff == 384));
  int checked = 0;
  const double worst = reference_gap(kDir, &checked);
  MESSAGE("TinyStories-656K: max |logit - HF reference| = " << worst << " over " << checked << " positions");
  CHECK(worst <= 1e-4);
}

TEST_CASE("hf: the shipped models/tinystories-656k.qtf is what the importer makes of the fixture directory") {
  std::vector<uint8_t> img, shipped;
  REQUIRE(hf_dir_to_qtf(kDir.c_str(), &img).ok());
  REQUIRE(qtf::testing::read_file(std::string(QTF_SOURCE_DIR) + "/models/tinystories-656k.qtf", &shipped));
  CHECK_MESSAGE(img == shipped, "the importer changed: `qtf convert tests/fixtures/tinystories-656k "
                                "models/tinystories-656k.qtf` and update the card in models/README.md");
}

TEST_CASE("hf: a tiny Qwen2 (q/k/v biases, GQA, untied, F16/BF16, ByteLevel tokenizer) gives its reference logits") {
  const std::string dir = std::string(QTF_SOURCE_DIR) + "/tests/fixtures/hf-qwen2-tiny";
  int checked = 0;
  const double worst = reference_gap(dir, &checked);
  MESSAGE("tiny Qwen2: max |logit - HF reference| = " << worst << " over " << checked << " positions");
  CHECK(worst <= 1e-4);
  std::vector<uint8_t> img;
  REQUIRE(hf_dir_to_qtf(dir.c_str(), &img).ok());
  format::ModelFile f;
  REQUIRE(f.open(img.data(), img.size()).ok());
  format::Str v;
  int64_t x = -99;
  REQUIRE(f.get_str("tokenizer.pre", &v).ok());
  CHECK(v.equals("gpt2"));
  REQUIRE(f.get_str("tokenizer.normalizer", &v).ok());
  CHECK(v.equals("none"));
  REQUIRE(f.get_i64("model.linear_bias", &x).ok());
  CHECK(x == 1);  // q/k/v biases given, o/gate/up/down zeros
  REQUIRE(f.get_i64("model.tied_embeddings", &x).ok());
  CHECK(x == 0);
  REQUIRE(f.get_i64("tokenizer.bos_id", &x).ok());
  CHECK(x == -1);
  REQUIRE(f.get_i64("tokenizer.eos_id", &x).ok());
  CHECK(x == 262);
  REQUIRE(f.get_i64("tokenizer.add_bos", &x).ok());
  CHECK(x == 0);
  REQUIRE(f.get_str("tokenizer.chat_template", &v).ok());
  CHECK(std::string(v.data, v.size).find("{% for m in messages %}<|im_start|>{{ m['role'] }}\n") == 0);
  format::MetaEntry tokens, merges, types;
  REQUIRE(f.find_meta("tokenizer.tokens", &tokens));
  REQUIRE(f.find_meta("tokenizer.merges", &merges));
  REQUIRE(f.find_meta("tokenizer.token_types", &types));
  REQUIRE(tokens.count == 300);
  format::Str t;
  auto token = [&](uint32_t i) {
    tokens.str_at(i, &t);
    return std::string(t.data, t.size);
  };
  // GPT-2's alphabet undone (id b is byte b here): U+0100 -> byte 0, U+0120 -> the space, 'A' itself,
  // U+00BC -> byte 0xBC (not UTF-8 alone, so escaped); merges too.
  CHECK(token(0) == "\\x00");
  CHECK(token(32) == "\\x20");
  CHECK(token(65) == "A");
  CHECK(token(188) == "\\xbc");
  CHECK(token(258) == "\\x20the");
  CHECK(token(260) == "\xc3\xa9");  // é: its two bytes merged, valid UTF-8 literal
  CHECK(token(261) == "<|im_start|>");
  CHECK(token(263) == "[PAD263]");
  merges.str_at(0, &t);
  CHECK(std::string(t.data, t.size) == "\\x20 t");
  int64_t ty = 0;
  REQUIRE(types.i64_at(262, &ty));
  CHECK(ty == 3);
  REQUIRE(types.i64_at(299, &ty));
  CHECK(ty == 5);
}

TEST_CASE("hf: TinyStories-656K tokenizer keys") {
  std::vector<uint8_t> img, via_dispatch;
  REQUIRE(hf_dir_to_qtf(kDir.c_str(), &img).ok());
  CHECK(detect(kDir.c_str()) == Source::hf_dir);  // import.h's dispatch takes the same path
  REQUIRE(to_qtf(kDir.c_str(), Options(), &via_dispatch).ok());
  CHECK(via_dispatch == img);
  format::ModelFile f;
  Status s = f.open(img.data(), img.size());
  REQUIRE_MESSAGE(s.ok(), s.message());
  auto str = [&](const char* k) {
    format::Str v;
    REQUIRE_MESSAGE(f.get_str(k, &v).ok(), k);
    return std::string(v.data, v.size);
  };
  auto i64 = [&](const char* k) {
    int64_t v = -99;
    REQUIRE_MESSAGE(f.get_i64(k, &v).ok(), k);
    return v;
  };
  CHECK(str("tokenizer.type") == "bpe");
  CHECK(str("tokenizer.normalizer") == "spm");
  CHECK(str("tokenizer.pre") == "none");
  CHECK(i64("tokenizer.add_space_prefix") == 1);
  CHECK(i64("tokenizer.byte_fallback") == 1);
  CHECK(i64("tokenizer.fuse_unk") == 1);
  CHECK(i64("tokenizer.unk_id") == 0);
  CHECK(i64("tokenizer.bos_id") == 1);
  CHECK(i64("tokenizer.eos_id") == 2);
  CHECK(i64("tokenizer.pad_id") == 0);  // tokenizer_config.json's pad_token is <unk>
  CHECK(i64("tokenizer.add_bos") == 1);
  CHECK(i64("tokenizer.add_eos") == 0);
  format::MetaEntry tokens, merges, types;
  REQUIRE(f.find_meta("tokenizer.tokens", &tokens));
  REQUIRE(f.find_meta("tokenizer.merges", &merges));
  REQUIRE(f.find_meta("tokenizer.token_types", &types));
  CHECK(tokens.count == 2048);
  CHECK(merges.count == 1967);
  format::Str t;
  tokens.str_at(1, &t);
  CHECK(std::string(t.data, t.size) == "<|start_story|>");
  tokens.str_at(3, &t);
  CHECK(std::string(t.data, t.size) == "\\x0a");  // "\n", escaped
  merges.str_at(0, &t);
  CHECK(std::string(t.data, t.size) == "e \xe2\x96\x81");
  int64_t ty[4];
  for (int i = 0; i < 4; ++i) REQUIRE(types.i64_at((uint32_t)i, &ty[i]));
  CHECK((ty[0] == 2 && ty[1] == 3 && ty[2] == 3 && ty[3] == 1));  // unknown, control, control, normal
}

TEST_CASE("hf: directories the importer refuses, each with one line") {
  TempDir d;
  CHECK(d.import_error().empty());
  // Tensors: missing, wrong shape, unexpected, unsupported dtype.
  std::vector<uint8_t> st;
  REQUIRE(qtf::testing::read_file(kDir + "/model.safetensors", &st));
  std::string header(st.begin() + 8, st.begin() + 8 + (long)(st[0] | st[1] << 8 | st[2] << 16));
  auto with_header = [&](const std::string& from, const std::string& to) {
    std::string h = header;
    size_t at = h.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    h.replace(at, from.size(), to);
    while (h.size() < header.size()) h += ' ';
    REQUIRE(h.size() == header.size());
    std::vector<uint8_t> b = st;
    std::memcpy(b.data() + 8, h.data(), h.size());
    return b;
  };
  d.put("model.safetensors", with_header("model.norm.weight", "model.norm.weighx"));
  CHECK(d.import_error() == "LlamaForCausalLM: tensor 'model.norm.weight' is missing");
  d.put("model.safetensors", with_header("\"model.layers.0.mlp.down_proj.weight\":{\"dtype\":\"F32\",\"shape\":[128,384]",
                                         "\"model.layers.0.mlp.down_proj.weight\":{\"dtype\":\"F32\",\"shape\":[384,128]"));
  CHECK(d.import_error() ==
        "model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' has shape [384, 128], config.json implies [128, 384]");
  d.put("model.safetensors", with_header("\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[128]",
                                         "\"model.norm.weight\":{\"dtype\":\"I32\",\"shape\":[128]"));
  CHECK(d.import_error() == "model.safetensors: tensor 'model.norm.weight' has dtype I32; the importer reads F32, F16 and BF16");
  d.put("model.safetensors", with_header("\"model.layers.1.self_attn.q_proj.weight\"", "\"model.layers.1.self_attn.q_proj.bias\""));
  CHECK(d.import_error().find("tensor 'model.layers.1.self_attn.q_proj.weight' is missing") != std::string::npos);
  {  // a tensor the model as configured does not have
    std::vector<import::StTensor> ts;
    REQUIRE(import::parse_safetensors(st.data(), st.size(), "m", &ts).ok());
    std::vector<qtf::testing::StEntry> es;
    for (const import::StTensor& t : ts)
      es.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.bytes)});
    es.push_back({"model.layers.0.self_attn.q_norm.weight", "F32", {16}, std::vector<uint8_t>(64, 0)});
    d.put("model.safetensors", qtf::testing::make_safetensors(es, ""));
    CHECK(d.import_error() ==
          "model.safetensors: tensor 'model.layers.0.self_attn.q_norm.weight' is not part of a LlamaForCausalLM as "
          "config.json describes it");
  }
  std::vector<uint8_t> cut(st.begin(), st.begin() + (long)st.size() / 2);
  d.put("model.safetensors", cut);
  CHECK(d.import_error().find("model.safetensors: tensor") == 0);
  d.put("model.safetensors", st);
  CHECK(d.import_error().empty());

  // Tokenizers the engine has no algorithm for.
  std::string tok = read_text(kDir + "/tokenizer.json");
  auto tok_error = [&](const std::string& from, const std::string& to) {
    std::string t = tok;
    size_t at = t.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    d.put("tokenizer.json", t.replace(at, from.size(), to));
    return d.import_error();
  };
  CHECK(tok_error("\"type\": \"BPE\"", "\"type\": \"Unigram\"") ==
        "tokenizer.json: model type 'Unigram' is not supported (BPE only)");
  CHECK(tok_error("\"pre_tokenizer\": null", "\"pre_tokenizer\": {\"type\": \"Whitespace\"}") ==
        "tokenizer.json: pre_tokenizer 'Whitespace' is not supported (ByteLevel, Metaspace without split, or none)");
  CHECK(tok_error("\"normalizer\": {", "\"normalizer\": {\"type\": \"NFC\"}, \"x\": {") ==
        "tokenizer.json: normalizer 'NFC' is not supported (Prepend(\xe2\x96\x81) + Replace(' ', \xe2\x96\x81), or none)");
  CHECK(tok_error("\"continuing_subword_prefix\": null", "\"continuing_subword_prefix\": \"##\"") ==
        "tokenizer.json: BPE option 'continuing_subword_prefix' is not supported");
  CHECK(tok_error("\"<unk>\": 0,", "\"<unk>\": 4096,") == "tokenizer.json: token id 4096 is beyond config.json's vocab_size 2048");
  CHECK(tok_error("\"<unk>\": 0,", "\"<unk>\": 3,") == "tokenizer.json: token id 3 appears twice");
  CHECK(tok_error("\"e ▁\",", "\"e▁\",") == "tokenizer.json: merge 'e▁' is not 'left right'");
  CHECK(tok_error("\"unk_token\": \"<unk>\"", "\"unk_token\": \"<nope>\"") ==
        "tokenizer.json: unk_token '<nope>' is not in the vocabulary");
  CHECK(tok_error("{", "[").find("tokenizer.json: ") == 0);
  d.put("tokenizer.json", tok);
  d.remove("tokenizer.json");
  CHECK(d.import_error().find("cannot open") != std::string::npos);
  d.put("tokenizer.json", tok);
  d.remove("config.json");
  CHECK(d.import_error().find("config.json") != std::string::npos);
  d.put("config.json", std::string(2 << 20, ' ') + "{}");  // refused by size, mapped but never read whole
  CHECK(d.import_error() == "config.json: 2097154 bytes, more than the 1048576 this reader takes");
  d.put("config.json", read_text(kDir + "/config.json"));
  // Optional files may be absent.
  d.remove("tokenizer_config.json");
  d.remove("generation_config.json");
  CHECK(d.import_error().empty());
}

TEST_CASE("hf: the same model split into shards imports to the same file") {
  std::vector<uint8_t> whole;
  REQUIRE(hf_dir_to_qtf(kDir.c_str(), &whole).ok());
  TempDir d;
  std::vector<uint8_t> st;
  REQUIRE(qtf::testing::read_file(kDir + "/model.safetensors", &st));
  std::vector<import::StTensor> ts;
  REQUIRE(import::parse_safetensors(st.data(), st.size(), "m", &ts).ok());
  std::vector<qtf::testing::StEntry> a, b;
  std::string map = "{\"metadata\":{\"total_size\":0},\"weight_map\":{";
  for (size_t i = 0; i < ts.size(); ++i) {
    qtf::testing::StEntry e{ts[i].name, ts[i].dtype, ts[i].shape, std::vector<uint8_t>(ts[i].data, ts[i].data + ts[i].bytes)};
    const char* shard = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    (i % 2 ? b : a).push_back(e);
    map += std::string(i ? "," : "") + "\"" + ts[i].name + "\":\"" + shard + "\"";
  }
  map += "}}";
  d.remove("model.safetensors");
  d.put("model-00001-of-00002.safetensors", qtf::testing::make_safetensors(a, ""));
  d.put("model-00002-of-00002.safetensors", qtf::testing::make_safetensors(b, ""));
  d.put("model.safetensors.index.json", map);
  std::vector<uint8_t> sharded;
  Status s = hf_dir_to_qtf(d.path.c_str(), &sharded);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(sharded == whole);
}
