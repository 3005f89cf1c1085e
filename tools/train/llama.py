"""The block options of docs/llama.md in PyTorch, and llama2.c checkpoints (karpathy/llama2.c).

qtf's block has options (the engine reads them from the file's metadata, docs/format.md):
  model.norm        layernorm | rmsnorm         (rmsnorm: gain only, no shift)
  model.positions   learned | rotary            (rotary: no pos_emb; RoPE on q and k, model.rope_theta)
  model.activation  gelu | swiglu (| daruan)    (swiglu: down(silu(gate a) * up a))
  model.n_kv_heads  key/value heads, divides n_heads (grouped-query attention)
  model.linear_bias 0 | 1                       (0: the linears have no `.b`)
and the QLLM / Q-Transformers options of docs/qllm.md:
  model.phase_rotation 0 | 1                    (x_c *= cos(phi_c) - sin(phi_c), phi = tanh(p) pi; tensor `phase`)
  model.memory_tokens  G                        (learned slots prepended to every sequence; tensor `memory`)
  model.lora_alpha     alpha                    (X.lora_a [r, in], X.lora_b [out, r]; y += alpha/r B A x)
  model.attention      softmax | sampled        (+ model.attention_samples S, model.attention_seed)
A Llama block (llama2.c) is rmsnorm + rotary + swiglu + n_kv_heads, no biases, shared or separate
classifier. This module is the reference for models with these options and no quantum parts
(model.py's QTensorFormer is the reference for the quantum parts); the engine must reproduce it.

llama2.c checkpoints (read_llama2c, write_llama2c, runc_forward, convert_llama2c) are in
llama2c_checkpoint.py and the configuration's metadata (LlamaConfig, model_meta) in llama_meta.py, both
without torch; this module re-exports them.

    python3 tools/train/llama.py fixtures [--out tests/fixtures]    # parity fixtures for the engine
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import DenseLinear, TTLinear
from qtf_format import read_qtf, write_model, write_qtf
# The configuration and the llama2.c checkpoints live in torch-free modules (tools/convert needs no
# torch); re-exported here for the scripts and tests that import them from llama.
from llama_meta import LlamaConfig, model_meta  # noqa: F401
from llama2c_checkpoint import (CheckpointError, LLAMA2C_FIELDS, LLAMA2C_MAGIC, convert_llama2c,  # noqa: F401
                                random_llama2c_weights, read_llama2c, runc_forward, stand_in_tokens, write_llama2c)


# ---------------------------------------------------------------------------------------------------
# The model with block options (no quantum parts)

class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps)."""

    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps))


def rope(x, theta):
    """Rotary positions on x [B, heads, T, hd]: the pair (2i, 2i+1) at position t turns by
    t * theta^(-2i/hd) (Meta's Llama / llama2.c pairing: adjacent values, not the two halves)."""
    T, hd = x.shape[-2], x.shape[-1]
    i = torch.arange(0, hd, 2, dtype=torch.float64, device=x.device)
    ang = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * theta ** (-i / hd)[None, :]  # [T, hd/2]
    c, s = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).flatten(-2)


def make_linear(cfg, n_in, n_out, f_in, f_out, ranks=None):
    """ranks: explicit TT bond ranks [1, r_1, .., 1] (a file's cores, e.g. a compressed model), else tt_rank."""
    if cfg.tensorized:
        lin = TTLinear(f_in, f_out, cfg.tt_rank, ranks=ranks) if ranks else TTLinear(f_in, f_out, cfg.tt_rank)
    else:
        lin = DenseLinear(n_in, n_out)
    if not cfg.linear_bias:  # a fixed zero bias: not a parameter, not in the file
        del lin.bias
        lin.register_buffer("bias", torch.zeros(n_out), persistent=False)
    return lin


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) B (A x), A [r, in], B [out, r] (PEFT's names; QLLM's B is our A and its A
    our B). A starts random and B at zero, so a new adapter leaves the model unchanged."""

    def __init__(self, base, n_in, n_out, r, alpha):
        super().__init__()
        self.base, self.r, self.alpha = base, r, float(alpha)
        self.A = nn.Parameter(torch.empty(r, n_in))
        self.B = nn.Parameter(torch.zeros(n_out, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def scale(self):
        return self.alpha / self.r

    def forward(self, x):
        return self.base(x) + self.scale * F.linear(F.linear(x, self.A), self.B)


def base_of(lin):
    return lin.base if isinstance(lin, LoRALinear) else lin


def merge_lora(model):
    """W += (alpha/r) B A for every dense linear with an adapter; the adapter is removed (export merged).
    Tensorized linears keep theirs (merging would raise the TT ranks)."""
    with torch.no_grad():
        for blk in model.blocks:
            for name in ("q", "k", "v", "o", "gate", "up", "down"):
                lin = getattr(blk, name, None)
                if isinstance(lin, LoRALinear) and isinstance(lin.base, DenseLinear):
                    lin.base.weight += lin.scale * (lin.B @ lin.A)
                    setattr(blk, name, lin.base)
    return model


MASK64 = (1 << 64) - 1


def mix64(z):
    """SplitMix64's finalizer on numpy uint64 arrays (wrapping arithmetic), docs/qllm.md."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def attention_draws(seed, layer, heads, slots, S):
    """u [heads, slots, S] in [0, 1): the uniforms of sampled attention (docs/qllm.md, 24 bits each)."""
    h = np.arange(heads, dtype=np.uint64)[:, None]
    t = np.arange(slots, dtype=np.uint64)[None, :]
    key = (np.uint64(layer) << np.uint64(48)) + (h << np.uint64(32)) + t
    state = mix64(np.uint64(seed) ^ mix64(key))                                   # [heads, slots]
    with np.errstate(over="ignore"):
        steps = np.arange(1, S + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # state after draw s
        z = mix64(state[:, :, None] + steps[None, None, :])
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def sampled_attention(p, v, layer, S, seed, stats=None):
    """p [B, H, T, T] causal softmax weights, v [B, H, T, hd] -> the estimate (1/S) sum_s v[j_s], j_s the
    smallest j with u_s < C_j (C the prefix sums of p's row; j_s = t if none). stats (a dict) collects the
    estimated variance per (batch, head, slot) and the smallest distance of any u to a boundary C_j."""
    B, H, T, _ = p.shape
    u = attention_draws(seed, layer, H, T, S)                                     # [H, T, S]
    cdf = torch.cumsum(p.double(), -1).detach().cpu().numpy()                     # [B, H, T, T]
    w = np.zeros((B, H, T, T))
    margin = 1.0
    for b in range(B):
        for h in range(H):
            for t in range(T):
                c = cdf[b, h, t, :t + 1]
                j = np.minimum(np.searchsorted(c, u[h, t], side="right"), t)
                np.add.at(w[b, h, t], j, 1.0 / S)
                margin = min(margin, float(np.min(np.abs(u[h, t][:, None] - c[None, :]))))
    w = torch.from_numpy(w).to(v.dtype)
    out = w @ v
    if stats is not None:  # (sum_s |v_js|^2 - S |o|^2) / (S (S - 1)), as the engine reports it
        sq = w @ (v * v).sum(-1, keepdim=True)                                   # mean of |v_j|^2 over draws
        var = (S * sq[..., 0] - S * (out * out).sum(-1)) / max(S - 1, 1) / S if S > 1 else torch.zeros_like(sq[..., 0])
        stats.setdefault("var", []).append(var.clamp(min=0))
        stats["margin"] = min(stats.get("margin", 1.0), margin)
    return out


class LlamaBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig, ranks=None, lora_ranks=None, layer=0):
        """ranks: optional {linear name: TT bond ranks} (per-matrix ranks of a compressed model);
        lora_ranks: optional {linear name: adapter rank} (a file's), else cfg.lora_rank on cfg.lora_targets."""
        super().__init__()
        self.layer = layer
        self.cfg = cfg
        d = cfg.d_model
        norm = (lambda: RMSNorm(d, cfg.ln_eps)) if cfg.norm == "rmsnorm" else (lambda: nn.LayerNorm(d, eps=cfg.ln_eps))
        self.ln1, self.ln2 = norm(), norm()
        df, ff, kf = cfg.d_factors, cfg.ff_factors, (cfg.kv_factors or cfg.d_factors)
        r = (ranks or {}).get
        self.q = make_linear(cfg, d, d, df, df, r("q"))
        self.k = make_linear(cfg, d, cfg.kv_dim, df, kf, r("k"))
        self.v = make_linear(cfg, d, cfg.kv_dim, df, kf, r("v"))
        self.o = make_linear(cfg, d, d, df, df, r("o"))
        if cfg.activation == "swiglu":
            self.gate = make_linear(cfg, d, cfg.d_ff, df, ff, r("gate"))
        self.up = make_linear(cfg, d, cfg.d_ff, df, ff, r("up"))
        self.down = make_linear(cfg, cfg.d_ff, d, ff, df, r("down"))
        if lora_ranks is None:
            lora_ranks = {n: cfg.lora_rank for n in cfg.lora_targets} if cfg.lora_rank else {}
        dims = {"q": (d, d), "k": (d, cfg.kv_dim), "v": (d, cfg.kv_dim), "o": (d, d), "gate": (d, cfg.d_ff),
                "up": (d, cfg.d_ff), "down": (cfg.d_ff, d)}
        for name, rank in lora_ranks.items():
            setattr(self, name, LoRALinear(getattr(self, name), dims[name][0], dims[name][1], rank, cfg.lora_alpha))
        self.sample_stats = None  # a dict to collect sampled attention's variance and margin (fixtures)

    def forward(self, x):
        cfg = self.cfg
        B, T, d = x.shape
        H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        a = self.ln1(x)
        q = self.q(a).view(B, T, H, hd).transpose(1, 2)
        k = self.k(a).view(B, T, KV, hd).transpose(1, 2)
        v = self.v(a).view(B, T, KV, hd).transpose(1, 2)
        if cfg.positions == "rotary":
            q, k = rope(q, cfg.rope_theta), rope(k, cfg.rope_theta)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)  # query head h: kv head h // (H/KV)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        p = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)
        if cfg.attention == "sampled" and cfg.attention_samples > 0:
            out = sampled_attention(p, v, self.layer, cfg.attention_samples, cfg.attention_seed, self.sample_stats)
        else:
            out = p @ v
        drop = lambda t: F.dropout(t, cfg.dropout, self.training) if cfg.dropout else t
        x = x + drop(self.o(out.transpose(1, 2).reshape(B, T, d)))
        b = self.ln2(x)
        hid = F.silu(self.gate(b)) * self.up(b) if cfg.activation == "swiglu" else F.gelu(self.up(b))
        return x + drop(self.down(hid))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig, ranks=None, lora_ranks=None):
        """ranks: optional [per layer {linear name: TT bond ranks}] (a file's core shapes); lora_ranks:
        optional [per layer {linear name: adapter rank}] (a file's)."""
        super().__init__()
        assert cfg.attention in ("softmax", "sampled") and 0 <= cfg.memory_tokens < cfg.context
        assert cfg.activation in ("gelu", "swiglu") and cfg.norm in ("layernorm", "rmsnorm")
        assert cfg.positions in ("learned", "rotary") and cfg.n_heads % cfg.n_kv_heads == 0
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(LlamaBlock(cfg, ranks[l] if ranks else None, lora_ranks[l] if lora_ranks else None, l)
                                    for l in range(cfg.n_layers))
        if cfg.phase_rotation:
            self.phase = nn.Parameter(torch.zeros(cfg.d_model))  # p; phi = tanh(p) pi (QLLM's PhaseRotator)
        if cfg.memory_tokens:
            self.memory = nn.Parameter(torch.randn(cfg.memory_tokens, cfg.d_model) * 0.02)
        self.lnf = RMSNorm(cfg.d_model, cfg.ln_eps) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        if not cfg.tied_embeddings:
            self.head = nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model) * 0.02)

    def head_weight(self):
        return self.tok_emb.weight if self.cfg.tied_embeddings else self.head

    def coherence_loss(self):
        """QLLM's regulariser on the raw phases p: mean((p_{c+1} - p_c)^2) + 0.1 mean(p^2) (training only)."""
        p = self.phase
        return ((p[1:] - p[:-1]) ** 2).mean() + 0.1 * (p ** 2).mean()

    def forward(self, tokens):
        """tokens [B, T] -> (logits [B, T, V], per layer {"rank": [B, T]}) as QTensorFormer.forward.
        Memory slots (docs/qllm.md) run first in every block; no logits are made for them."""
        cfg = self.cfg
        x = self.tok_emb(tokens)
        if cfg.positions == "learned":
            x = x + self.pos_emb(torch.arange(tokens.shape[1], device=tokens.device))
        if cfg.phase_rotation:  # x cos(phi) - x sin(phi): both terms on the same component (QLLM verbatim)
            phi = torch.tanh(self.phase) * math.pi
            x = x * torch.cos(phi) - x * torch.sin(phi)
        if cfg.dropout:
            x = F.dropout(x, cfg.dropout, self.training)
        G = cfg.memory_tokens
        if G:
            x = torch.cat([self.memory.unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype), x], 1)
        for blk in self.blocks:
            x = blk(x)
        x = x[:, G:]
        rank = torch.full(tokens.shape, cfg.tt_rank, dtype=torch.long, device=tokens.device)
        return F.linear(self.lnf(x), self.head_weight()), [{"rank": rank} for _ in self.blocks]


# ---------------------------------------------------------------------------------------------------
# .qtf export / import

def tensor_map(model):
    """[(qtf tensor name, torch tensor)] in file order."""
    cfg, out = model.cfg, []

    def linear(name, lin):
        if isinstance(lin, LoRALinear):
            out.extend(((name + ".lora_a", lin.A), (name + ".lora_b", lin.B)))
            lin = lin.base
        if cfg.tensorized:
            out.extend(("%s.core.%d" % (name, k), c) for k, c in enumerate(lin.cores))
        else:
            out.append((name + ".w", lin.weight))
        if cfg.linear_bias:
            out.append((name + ".b", lin.bias))

    def norm(name, m):
        out.append((name + ".w", m.weight))
        if cfg.norm == "layernorm":
            out.append((name + ".b", m.bias))

    out.append(("tok_emb", model.tok_emb.weight))
    if cfg.positions == "learned":
        out.append(("pos_emb", model.pos_emb.weight))
    if cfg.phase_rotation:
        out.append(("phase", model.phase))
    if cfg.memory_tokens:
        out.append(("memory", model.memory))
    for l, blk in enumerate(model.blocks):
        p = "blk.%d." % l
        norm(p + "ln1", blk.ln1)
        norm(p + "ln2", blk.ln2)
        for n in "qkvo":
            linear(p + "attn." + n, getattr(blk, n))
        if cfg.activation == "swiglu":
            linear(p + "ffn.gate", blk.gate)
        linear(p + "ffn.up", blk.up)
        linear(p + "ffn.down", blk.down)
    norm("lnf", model.lnf)
    if not cfg.tied_embeddings:
        out.append(("head.w", model.head))
    return out


def export_qtf(model, path, tokens, provenance=None, dtype="f32", tokenizer_type="char"):
    tensors = tensor_map(model)
    has_lora = any(n.endswith(".lora_a") for n, _ in tensors)
    return write_model(path, model_meta(model.cfg, tokens, provenance, tokenizer_type, has_lora), tensors, dtype)


def byte_tokens():
    """The `byte` tokenizer's 256 tokens, escaped as docs/tokenizer.md says (every byte as \\xHH)."""
    return ["\\x%02x" % b for b in range(256)]


def export_adapter(model, path, provenance=None):
    """Writes the model's LoRA tensors alone as an adapter file (qtf.arch = lora, docs/qllm.md)."""
    tensors = [(n, t) for n, t in tensor_map(model) if n.endswith(".lora_a") or n.endswith(".lora_b")]
    meta = {"qtf.arch": "lora", "lora.alpha": float(model.cfg.lora_alpha)}
    for k, v in (provenance or {}).items():
        meta["provenance." + k] = v
    return write_model(path, meta, tensors, "f32")


def is_llama_meta(meta):
    """True for files that use any block option (export.load_qtf hands those to load_qtf here)."""
    return any(k in meta for k in ("model.norm", "model.positions", "model.n_kv_heads", "model.linear_bias",
                                   "model.phase_rotation", "model.memory_tokens", "model.lora_alpha",
                                   "model.attention")) or meta.get("model.activation") == "swiglu"


def config_from_meta(meta):
    get = lambda k, d: meta.get(k, d)
    return LlamaConfig(
        vocab_size=meta["model.vocab_size"], d_model=meta["model.d_model"], n_layers=meta["model.n_layers"],
        n_heads=meta["model.n_heads"], n_kv_heads=get("model.n_kv_heads", meta["model.n_heads"]),
        d_ff=meta["model.d_ff"], context=meta["model.context"], norm=get("model.norm", "layernorm"),
        positions=get("model.positions", "learned"), rope_theta=get("model.rope_theta", 10000.0),
        activation=meta["model.activation"], linear_bias=get("model.linear_bias", 1),
        tied_embeddings=meta["model.tied_embeddings"], ln_eps=get("model.ln_eps", 1e-5),
        tensorized=meta["model.tensorized"], d_factors=list(get("model.tt.d_factors", [])),
        ff_factors=list(get("model.tt.ff_factors", [])), kv_factors=list(get("model.tt.kv_factors", [])),
        tt_rank=get("model.tt.rank", 0), phase_rotation=get("model.phase_rotation", 0),
        memory_tokens=get("model.memory_tokens", 0), lora_alpha=get("model.lora_alpha", 0.0),
        attention=get("model.attention", "softmax"), attention_samples=get("model.attention_samples", 64),
        attention_seed=get("model.attention_seed", 0))


def load_qtf(path, dtype=torch.float32):
    """Reads a .qtf with block options into a Llama (eval mode); returns (model, meta)."""
    meta, tensors = read_qtf(path)
    if meta.get("model.n_qubits", 0) != 0:
        raise ValueError("llama.load_qtf: the reference covers models without quantum parts")
    cfg = config_from_meta(meta)
    ranks = None
    if cfg.tensorized:  # every matrix's bond ranks as stored (compression gives each its own)
        K = len(cfg.d_factors)
        ranks = [{n: [1] + [int(tensors["blk.%d.%s.core.%d" % (l, p, k)].shape[3]) for k in range(K - 1)] + [1]
                  for n, p in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.o"), ("gate", "ffn.gate"),
                               ("up", "ffn.up"), ("down", "ffn.down"))
                  if "blk.%d.%s.core.0" % (l, p) in tensors}
                 for l in range(cfg.n_layers)]
    lora_ranks = [{n: int(tensors["blk.%d.%s.lora_a" % (l, p)].shape[0])
                   for n, p in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.o"), ("gate", "ffn.gate"),
                                ("up", "ffn.up"), ("down", "ffn.down"))
                   if "blk.%d.%s.lora_a" % (l, p) in tensors}
                  for l in range(cfg.n_layers)]
    model = Llama(cfg, ranks, lora_ranks).to(dtype).eval()
    names = set()
    with torch.no_grad():
        for name, param in tensor_map(model):
            a = tensors[name]
            if tuple(a.shape) != tuple(param.shape):
                raise ValueError("%s: shape %s in file, %s in model" % (name, a.shape, tuple(param.shape)))
            param.copy_(torch.from_numpy(a.astype(np.float32)))
            names.add(name)
    extra = set(tensors) - names
    if extra:
        raise ValueError("tensors the config does not use: %s" % sorted(extra))
    return model, meta


# ---------------------------------------------------------------------------------------------------
# llama2.c checkpoints

# ---------------------------------------------------------------------------------------------------
# Parity fixtures for the engine (tests/fixtures/llama_*.{qtf,json}, read by tests/runtime/test_parity.cpp)

FIXTURES = {
    # rmsnorm + rotary + swiglu + GQA, dense, no biases, tied: the llama2.c block
    "llama_rms_rope_swiglu_gqa_tied": dict(
        vocab_size=40, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=24, context=16),
    # the same block tensorized (K=2, kv factors of its own), with biases and a separate classifier
    "llama_tt_rms_rope_swiglu_gqa_bias_untied": dict(
        vocab_size=40, d_model=16, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=24, context=16, linear_bias=1,
        tied_embeddings=0, tensorized=1, d_factors=[4, 4], ff_factors=[4, 6], kv_factors=[2, 2], tt_rank=3),
    # options one at a time against the default block: layernorm + rotary + gelu + GQA, learned positions off
    "llama_ln_rope_gelu_gqa": dict(
        vocab_size=40, d_model=24, n_layers=2, n_heads=6, n_kv_heads=3, d_ff=32, context=16, norm="layernorm",
        activation="gelu", linear_bias=1, rope_theta=500.0),
    # rmsnorm + learned positions + swiglu, every head its own kv head
    "llama_rms_learned_swiglu_mha": dict(
        vocab_size=40, d_model=16, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=24, context=16, positions="learned"),
}
FIXTURE_TOKENS = [1, 7, 3, 39, 12, 12, 0, 25, 8, 30, 2, 17]


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "lnf.weight":
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "emb" in name or name == "head":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:  # linear weights and TT cores: keep activations O(1)
                p.mul_(1.5)


def randomize_qllm(model, gen):
    """randomize() plus the QLLM parts: adapters (B is zero when new), phases, memory slots."""
    randomize(model, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".A") or name.endswith(".B"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name == "phase":
                p.copy_(1.0 * torch.randn(p.shape, generator=gen))
            elif name == "memory":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


QLLM_FIXTURE_TEXT = "To be, or n\xc3\xa9t"  # bytes, one non-ASCII character (2 bytes)
QLLM_BASE = dict(vocab_size=256, d_model=16, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=32, context=24, norm="layernorm",
                 positions="learned", activation="gelu", linear_bias=1, tied_embeddings=0, phase_rotation=1,
                 memory_tokens=4, lora_rank=2, lora_alpha=4.0)
QLLM_FIXTURES = {
    # the QLLM block: byte vocabulary, phase gain, memory slots, LoRA on q k v o kept in the file
    "qllm_byte_phase_memory_lora": dict(QLLM_BASE),
    # tensorized, LoRA of its own rank per tensor (q 2, up 3, down 1), rotary + rmsnorm + memory slots
    "qllm_tt_lora_rope_memory": dict(QLLM_BASE, norm="rmsnorm", positions="rotary", tensorized=1, d_factors=[4, 4],
                                     ff_factors=[4, 8], tt_rank=3, linear_bias=0, tied_embeddings=1,
                                     lora_ranks={"q": 2, "up": 3, "down": 1}),
    # Q-Transformers: sampled attention (S = 8 draws per head), with memory slots and no LoRA
    "qllm_sampled_attention": dict(QLLM_BASE, lora_rank=0, attention="sampled", attention_samples=8,
                                   attention_seed=12345, memory_tokens=2),
}


def reference_logits(path, tokens):
    """float64 reference logits and, for sampled attention, the report's per-token variance and the
    smallest distance of any draw to a boundary of its prefix sums."""
    ref_model, meta = load_qtf(path, dtype=torch.float64)
    stats = {}
    for blk in ref_model.blocks:
        blk.sample_stats = stats
    with torch.no_grad():
        logits = ref_model(torch.tensor([tokens]))[0][0]
    G = ref_model.cfg.memory_tokens
    var = None
    if stats.get("var"):
        var = torch.stack(stats["var"])[:, 0, :, G:].mean((0, 1)).tolist()  # [layer, B, H, slot] -> per token
    return logits, var, stats.get("margin")


def write_fixture_json(out_dir, name, tokens, logits, L, rank, extra=None):
    T = len(tokens)
    doc = {"name": name, "seed": 18, "text": "", "tokens": tokens, "atol": 1e-4,
           "logits": [[float("%.8g" % v) for v in row] for row in logits.tolist()],
           "S": [[0.0] * L for _ in range(T)], "h": [[0.0] * L for _ in range(T)],
           "rank": [[rank] * L for _ in range(T)], "quantum": [[0] * L for _ in range(T)]}
    doc.update(extra or {})
    with open(os.path.join(out_dir, name + ".json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")


def make_qllm_fixtures(out_dir):
    """tests/fixtures/qllm_*: the docs/qllm.md options against the float64 reference; plus the merged twin of
    the first (lora/merged.qtf: no LoRA tensors, W + alpha/r B A) and its base model without adapters
    (lora/base.qtf) with the adapters alone (lora/adapter.qtf), for tests/runtime/test_qllm.cpp."""
    tokens = list(QLLM_FIXTURE_TEXT.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    prov = {"created_by": "tools/train/llama.py fixtures"}
    for name, over in QLLM_FIXTURES.items():
        over = dict(over)
        lora_ranks = over.pop("lora_ranks", None)
        cfg = LlamaConfig(**{**LlamaConfig().to_dict(), **over})
        if lora_ranks:
            cfg.lora_rank = 0
        gen = torch.Generator().manual_seed(18)
        torch.manual_seed(18)
        model = Llama(cfg, lora_ranks=[lora_ranks] * cfg.n_layers if lora_ranks else None)
        randomize_qllm(model, gen)
        path = os.path.join(out_dir, name + ".qtf")
        export_qtf(model, path, byte_tokens(), prov, tokenizer_type="byte")
        logits, var, margin = reference_logits(path, tokens)
        extra = {}
        if var is not None:
            extra["sample_var"] = [float("%.8g" % v) for v in var]
            extra["samples"] = cfg.attention_samples * cfg.n_heads * cfg.n_layers
            if margin < 1e-5:
                raise SystemExit("%s: a draw lies %.2g from a prefix-sum boundary; float32 could pick another "
                                 "index (change the seed)" % (name, margin))
            print("%-44s draws at least %.2g from any boundary" % (name, margin))
        write_fixture_json(out_dir, name, tokens, logits, cfg.n_layers, cfg.tt_rank, extra)
        print("%-44s logits in [%.2f, %.2f]" % (name, logits.min().item(), logits.max().item()))
        if name == "qllm_byte_phase_memory_lora":
            lora_dir = os.path.join(out_dir, "lora")  # not fixtures of their own (no .json): a folder apart
            os.makedirs(lora_dir, exist_ok=True)
            export_adapter(model, os.path.join(lora_dir, "adapter.qtf"), prov)
            base = Llama(cfg)
            base.load_state_dict(model.state_dict())
            for blk in base.blocks:  # the same base weights, adapters dropped
                for n in cfg.lora_targets:
                    setattr(blk, n, base_of(getattr(blk, n)))
            base.cfg = LlamaConfig(**{**cfg.to_dict(), "lora_rank": 0})
            export_qtf(base, os.path.join(lora_dir, "base.qtf"), byte_tokens(), prov, tokenizer_type="byte")
            merge_lora(model)
            export_qtf(model, os.path.join(lora_dir, "merged.qtf"), byte_tokens(), prov, tokenizer_type="byte")


def make_fixture(name, overrides, out_dir):
    cfg = LlamaConfig(**{**LlamaConfig(linear_bias=0).to_dict(), **overrides})
    gen = torch.Generator().manual_seed(18)
    torch.manual_seed(18)
    model = Llama(cfg)
    randomize(model, gen)
    path = os.path.join(out_dir, name + ".qtf")
    export_qtf(model, path, stand_in_tokens(cfg.vocab_size), {"created_by": "tools/train/llama.py fixtures"})
    ref_model, _ = load_qtf(path, dtype=torch.float64)
    with torch.no_grad():
        logits = ref_model(torch.tensor([FIXTURE_TOKENS]))[0][0]
    T, L = len(FIXTURE_TOKENS), cfg.n_layers
    doc = {"name": name, "seed": 18, "text": "", "tokens": FIXTURE_TOKENS, "atol": 1e-4,
           "logits": [[float("%.8g" % v) for v in row] for row in logits.tolist()],
           "S": [[0.0] * L for _ in range(T)], "h": [[0.0] * L for _ in range(T)],
           "rank": [[cfg.tt_rank] * L for _ in range(T)], "quantum": [[0] * L for _ in range(T)]}
    with open(os.path.join(out_dir, name + ".json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print("%-44s logits in [%.2f, %.2f]" % (name, logits.min().item(), logits.max().item()))


TINY_LLAMA2C = dict(dim=16, hidden_dim=24, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=40, seq_len=32)


def make_llama2c_fixture(out_dir, tmp_dir):
    """llama2c_tiny: a random llama2.c v0 checkpoint (separate classifier) converted by tools/convert, with
    logits from runc_forward() on the checkpoint itself: the whole chain checkpoint -> .qtf -> engine."""
    h = TINY_LLAMA2C
    w = random_llama2c_weights(h, shared=False, seed=260)
    ckpt = os.path.join(tmp_dir, "llama2c_tiny.bin")
    write_llama2c(ckpt, h, w, version=0, shared=False)
    data = open(ckpt, "rb").read()
    meta, tensors, hdr = convert_llama2c(data, {"source_file": "llama2c_tiny.bin (random, tools/train/llama.py)"})
    write_qtf(os.path.join(out_dir, "llama2c_tiny.qtf"), meta, tensors)
    hdr, w = read_llama2c(data)
    logits = runc_forward(hdr, w, FIXTURE_TOKENS)
    T, L = len(FIXTURE_TOKENS), h["n_layers"]
    doc = {"name": "llama2c_tiny", "seed": 260, "text": "", "tokens": FIXTURE_TOKENS, "atol": 1e-4,
           "logits": [[float("%.8g" % v) for v in row] for row in logits.tolist()],
           "S": [[0.0] * L for _ in range(T)], "h": [[0.0] * L for _ in range(T)],
           "rank": [[0] * L for _ in range(T)], "quantum": [[0] * L for _ in range(T)]}
    with open(os.path.join(out_dir, "llama2c_tiny.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print("%-44s logits in [%.2f, %.2f]" % ("llama2c_tiny", logits.min(), logits.max()))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fixtures"])
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name, overrides in FIXTURES.items():
        make_fixture(name, overrides, args.out)
    make_qllm_fixtures(args.out)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        make_llama2c_fixture(args.out, tmp)


if __name__ == "__main__":
    main()
