// A loaded Q-TensorFormer model: its configuration and views of its weights (in the model buffer,
// zero copy). Loading verifies that the metadata and the tensors agree (every shape checked).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "format/reader.h"
#include "kernels/kernels.h"
#include "quantum/quantum.h"

namespace qtf {

constexpr int kMaxLayers = 32;
constexpr int kMaxHeads = 64;

enum class Activation : uint8_t { gelu = 0, daruan = 1, swiglu = 2 };  // swiglu: gated FFN (Llama)
enum class NormKind : uint8_t { layernorm = 0, rmsnorm = 1 };
enum class PosKind : uint8_t { learned = 0, rotary = 1 };
// How attention weights are made (docs/qllm.md): softmax, the quantum kernel of quantum-routed tokens
// (model.quantum_attention), or softmax estimated from S draws.
enum class AttnKind : uint8_t { softmax = 0, quantum_kernel = 1, sampled = 2 };

struct ModelConfig {
  int vocab = 0, d = 0, n_layers = 0, n_heads = 0, d_ff = 0, context = 0;
  bool tensorized = false;
  int tt_K = 0, d_factors[kMaxTTFactors] = {0}, ff_factors[kMaxTTFactors] = {0}, tt_rank = 0;
  int r_min = 0, r_max = 0;
  float alpha = 0, theta = 0;
  int n_qubits = 0, n_qlayers = 0;  // n_qubits == 0: no quantum parts (the dense baseline)
  bool adaptive_rank = false, quantum_attention = false, tied_embeddings = false;
  Activation activation = Activation::gelu;
  int daruan_depth = 0;
  float ln_eps = 1e-5f;
  // Block options (docs/llama.md). Defaults are the Q-TensorFormer block.
  NormKind norm = NormKind::layernorm;
  PosKind positions = PosKind::learned;
  float rope_theta = 10000.f;
  int n_kv_heads = 0;                        // key/value heads (grouped-query attention), divides n_heads
  int kv_factors[kMaxTTFactors] = {0};       // TT factors of kv_dim (tensorized, kv_dim != d)
  bool linear_bias = true;                   // the linears carry biases `.b`
  // QLLM and Q-Transformers options (docs/qllm.md).
  bool phase_rotation = false;  // x_c *= cos(phi_c) - sin(phi_c), phi = tanh(p) pi (tensor `phase`)
  int memory_tokens = 0;        // G learned slots prepended to every sequence (tensor `memory`)
  float lora_alpha = 0;         // LoRA scale numerator (alpha / r per linear); 0: no LoRA in the file
  AttnKind attention = AttnKind::softmax;
  int attention_samples = 64;   // S draws per head (attention = sampled)
  uint64_t attention_seed = 0;

  int head_dim() const { return d / n_heads; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  bool has_encoder() const { return n_qubits > 0; }
};

// A linear map y = W x + b, tensor-train or dense.
struct Linear {
  bool tt = false;
  TTMatrix tt_w;
  DenseMatrix dense;
  int rows = 0, cols = 0;
  // LoRA adapter (docs/qllm.md): y += lora_scale * B (A x), A [lora_rank, cols], B [rows, lora_rank].
  const float* lora_a = nullptr;
  const float* lora_b = nullptr;
  int lora_rank = 0;
  float lora_scale = 0;
  int64_t params() const;  // base weights and bias (the adapter is counted apart: lora_params)
  int64_t lora_params() const { return (int64_t)lora_rank * (rows + cols); }
};

struct Layer {
  const float *ln1_w = nullptr, *ln1_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
  // quantum encoder (has_encoder)
  const float *enc_w = nullptr, *enc_b = nullptr, *qparams = nullptr, *qout_w = nullptr, *qout_b = nullptr;
  Linear q, k, v, o, up, down;
  Linear gate;  // activation == swiglu: down(silu(gate x) * up x)
  // quantum kernel attention (quantum_attention)
  const float *qk_w = nullptr, *qvar = nullptr, *beta = nullptr;
  quantum::DaruanParams daruan;  // activation == daruan
};

struct Model {
  ModelConfig cfg;
  format::ModelFile file;  // metadata (tokenizer, provenance) stays readable
  // The matrices (embeddings, head, linears, TT cores) are read in place in any stored type (f32, f16,
  // i8/q8, q4: docs/quantize.md), but q3, q4s and q3s ones, expanded to q4 blocks at load; the other tensors are f32
  // (converted at load when stored otherwise).
  Weights tok_emb, pos_emb, head_w;  // [V, d], [T, d], [V, d]; head_w == tok_emb when tied
  const float *lnf_w = nullptr, *lnf_b = nullptr;
  const float* phase = nullptr;   // [d] raw phase parameters p (phase_rotation)
  const float* memory = nullptr;  // [memory_tokens, d] global memory slots
  Layer layers[kMaxLayers];
  int lora_linears = 0;           // linears with an adapter (from the file or apply_adapter)

  // Bytes load() needs to convert tensors to f32 (those not f32 that are not read in place; 0 for an
  // all-f32 or a q8/f16/q4 file) and q3, q4s and q3s matrices to q4 blocks: a dry run of load() on this object, which
  // it leaves unloaded.
  size_t convert_bytes(const format::ModelFile& f);
  // Binds a verified file. convert_buf (convert_bytes() long, 16-byte aligned) receives converted
  // tensors; it may be null when convert_bytes() is 0. Both must outlive the Model.
  Status load(const format::ModelFile& file, void* convert_buf, size_t convert_len);

  // Binds a LoRA adapter file (qtf.arch = lora, docs/qllm.md) to this model's linears, in place: the
  // adapter's f32 tensors are used where they lie (the file must outlive the Model); base weights are not
  // touched. Refuses names, layers or shapes that do not fit, and linears that already have an adapter.
  Status apply_adapter(const format::ModelFile& adapter);

  int64_t block_params() const;  // parameters in the transformer blocks
  int64_t total_params() const;

 private:
  Status bind(const format::ModelFile& file, void* convert_buf, size_t convert_len, bool sizing, size_t* used);
};

}  // namespace qtf
