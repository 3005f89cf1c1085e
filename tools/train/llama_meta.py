"""The Llama block's configuration and its .qtf metadata (docs/llama.md), without torch: llama.py (the
PyTorch model) and the llama2.c converter (llama2c_checkpoint.py, numpy only) share it."""
from dataclasses import dataclass, asdict, field
from typing import List

from qtf_format import tokenizer_and_provenance


@dataclass
class LlamaConfig:
    vocab_size: int = 512
    d_model: int = 64
    n_layers: int = 5
    n_heads: int = 8
    n_kv_heads: int = 4
    d_ff: int = 172
    context: int = 512
    norm: str = "rmsnorm"
    positions: str = "rotary"
    rope_theta: float = 10000.0
    activation: str = "swiglu"
    linear_bias: int = 0
    tied_embeddings: int = 1
    ln_eps: float = 1e-5
    tensorized: int = 0
    d_factors: List[int] = field(default_factory=list)
    ff_factors: List[int] = field(default_factory=list)
    kv_factors: List[int] = field(default_factory=list)
    tt_rank: int = 0
    # docs/qllm.md
    phase_rotation: int = 0
    memory_tokens: int = 0
    lora_rank: int = 0            # rank of a new adapter on each of lora_targets (a file's ranks: lora_ranks)
    lora_alpha: float = 0.0
    lora_targets: List[str] = field(default_factory=lambda: ["q", "k", "v", "o"])
    attention: str = "softmax"    # softmax | sampled
    attention_samples: int = 64
    attention_seed: int = 0
    dropout: float = 0.0          # training only (embeddings and residual branches); not in the file

    def to_dict(self):
        return asdict(self)

    @property
    def head_dim(self):
        return self.d_model // self.n_heads

    @property
    def kv_dim(self):
        return self.n_kv_heads * self.head_dim


def model_meta(cfg, tokens, provenance=None, tokenizer_type="char", has_lora=False):
    c = cfg
    meta = {"qtf.arch": "qtensorformer", "model.vocab_size": c.vocab_size, "model.d_model": c.d_model,
            "model.n_layers": c.n_layers, "model.n_heads": c.n_heads, "model.n_kv_heads": c.n_kv_heads,
            "model.d_ff": c.d_ff, "model.context": c.context, "model.tensorized": c.tensorized,
            "model.n_qubits": 0, "model.activation": c.activation, "model.tied_embeddings": c.tied_embeddings,
            "model.ln_eps": float(c.ln_eps), "model.norm": c.norm, "model.positions": c.positions,
            "model.rope_theta": float(c.rope_theta), "model.linear_bias": c.linear_bias}
    if c.tensorized:
        meta.update({"model.tt.d_factors": list(c.d_factors), "model.tt.ff_factors": list(c.ff_factors),
                     "model.tt.rank": c.tt_rank})
        if c.kv_factors:
            meta["model.tt.kv_factors"] = list(c.kv_factors)
    if c.phase_rotation:
        meta["model.phase_rotation"] = 1
    if c.memory_tokens:
        meta["model.memory_tokens"] = c.memory_tokens
    if c.lora_alpha and has_lora:
        meta["model.lora_alpha"] = float(c.lora_alpha)
    if c.attention != "softmax":
        meta.update({"model.attention": c.attention, "model.attention_samples": c.attention_samples,
                     "model.attention_seed": c.attention_seed})
    return tokenizer_and_provenance(meta, tokenizer_type, tokens, provenance)
