"""Parity fixtures for the C++ engine: tiny random models and their float64 reference forward pass.

    /usr/bin/python3 tools/train/make_fixtures.py [--out tests/fixtures]

For each config NAME it writes NAME.qtf (f32 weights) and NAME.json with the token sequence and, per
position, the logits and per layer S, h, rank and the route (1 = quantum). The reference runs in float64
on the weights read back from NAME.qtf, so it uses exactly the f32-rounded values the engine sees.
Seeds are re-drawn until both routes and several ranks occur and every decision has a margin: each
alpha*S is >= MARGIN from an integer and each h is >= MARGIN from theta.
"""
import argparse
import json
import os

import numpy as np
import torch

from export import export_qtf, load_qtf
from model import Config, QTensorFormer, TTLinear

MARGIN = 1e-3
TEXT = "ROMEO:\nO, she doth"[:12]
# The 65 tiny-Shakespeare characters sorted by code point (what data.char_vocab returns for input.txt).
VOCAB = list("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

COMMON = dict(vocab_size=65, n_layers=2, n_heads=2, context=16, ln_eps=1e-5)
CONFIGS = {
    "q4_k3_daruan_adaptive_qattn_tied": dict(
        d_model=24, d_factors=[2, 4, 3], d_ff=48, ff_factors=[4, 4, 3], tt_rank=4, r_min=2, r_max=4,
        alpha=1.5, theta=0.4, n_qubits=4, n_qlayers=2, adaptive_rank=1, quantum_attention=1,
        activation="daruan", daruan_depth=3, tied_embeddings=1),
    "q2_k2_gelu_adaptive_qattn_untied": dict(
        d_model=16, d_factors=[4, 4], d_ff=32, ff_factors=[4, 8], tt_rank=4, r_min=1, r_max=4,
        alpha=3.0, theta=0.4, n_qubits=2, n_qlayers=1, adaptive_rank=1, quantum_attention=1,
        activation="gelu", daruan_depth=3, tied_embeddings=0),
    "q4_k2_daruan_fixedrank_noqattn_tied": dict(
        d_model=16, d_factors=[4, 4], d_ff=32, ff_factors=[4, 8], tt_rank=3, r_min=2, r_max=3,
        alpha=1.0, theta=0.4, n_qubits=4, n_qlayers=2, adaptive_rank=0, quantum_attention=0,
        activation="daruan", daruan_depth=2, tied_embeddings=1),
    "q2_k3_gelu_fixedrank_qattn_tied": dict(
        d_model=16, d_factors=[2, 2, 4], d_ff=32, ff_factors=[2, 4, 4], tt_rank=3, r_min=2, r_max=3,
        alpha=1.0, theta=0.5, n_qubits=2, n_qlayers=3, adaptive_rank=0, quantum_attention=1,
        activation="gelu", daruan_depth=3, tied_embeddings=1),
    "q4_k3_gelu_adaptive_noqattn_tied": dict(
        d_model=24, d_factors=[3, 2, 4], d_ff=48, ff_factors=[4, 3, 4], tt_rank=6, r_min=1, r_max=3,
        alpha=1.5, theta=0.4, n_qubits=4, n_qlayers=2, adaptive_rank=1, quantum_attention=0,
        activation="gelu", daruan_depth=3, tied_embeddings=1),
    "q4_k3_daruan_adaptive_qattn_untied": dict(
        d_model=24, d_factors=[2, 4, 3], d_ff=36, ff_factors=[3, 4, 3], tt_rank=5, r_min=2, r_max=5,
        alpha=3.0, theta=0.3, n_qubits=4, n_qlayers=1, adaptive_rank=1, quantum_attention=1,
        activation="daruan", daruan_depth=1, tied_embeddings=0),
    "dense": dict(
        d_model=16, d_factors=[4, 4], d_ff=32, ff_factors=[4, 8], tt_rank=8, r_min=8, r_max=8,
        alpha=1.0, theta=0.5, n_qubits=0, n_qlayers=0, adaptive_rank=0, quantum_attention=0,
        activation="gelu", daruan_depth=3, tied_embeddings=0, tensorized=0),
}


def randomize(model, gen):
    """Non-trivial weights: LN gains/biases, biases, embeddings and the quantum parts all matter."""
    def rnd(*shape, std=1.0):
        return torch.randn(*shape, generator=gen) * std

    with torch.no_grad():
        model.tok_emb.weight.copy_(rnd(*model.tok_emb.weight.shape, std=0.5))
        model.pos_emb.weight.copy_(rnd(*model.pos_emb.weight.shape, std=0.5))
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + rnd(*m.weight.shape, std=0.3))
                m.bias.copy_(rnd(*m.bias.shape, std=0.1))
            if isinstance(m, (TTLinear, torch.nn.Linear)):
                m.bias.copy_(rnd(*m.bias.shape, std=0.1))
        for blk in model.blocks:
            if model.cfg.n_qubits > 0:
                blk.enc.weight.copy_(rnd(*blk.enc.weight.shape, std=1.0 / blk.enc.weight.shape[1] ** 0.5))
                blk.enc.bias.copy_(rnd(*blk.enc.bias.shape, std=0.5))
                blk.qparams.copy_((torch.rand(blk.qparams.shape, generator=gen) * 2 - 1) * np.pi)
                blk.qout.weight.copy_(rnd(*blk.qout.weight.shape, std=0.5))
            if hasattr(blk, "w_qk"):
                blk.w_qk.copy_(rnd(*blk.w_qk.shape, std=1.0 / blk.w_qk.shape[2] ** 0.5))
                blk.qvar.copy_((torch.rand(blk.qvar.shape, generator=gen) * 2 - 1) * np.pi)
                blk.beta.copy_(1 + 5 * torch.rand(blk.beta.shape, generator=gen))
            if blk.act is not None:
                act = blk.act
                act.theta.copy_((torch.rand(act.theta.shape, generator=gen) * 2 - 1) * np.pi)
                act.w.copy_(0.5 + torch.rand(act.w.shape, generator=gen))
                act.b.copy_(rnd(*act.b.shape, std=0.5))
                act.a.copy_(1 + rnd(*act.a.shape, std=0.3))
                act.e.copy_(rnd(*act.e.shape, std=0.1))
                act.s.copy_(rnd(*act.s.shape, std=0.5))
        if not model.cfg.tied_embeddings:
            model.head.copy_(rnd(*model.head.shape, std=0.3))


def reference(model, tokens):
    """float64 forward over the whole sequence (causal, so position t depends only on tokens[:t+1])."""
    with torch.no_grad():
        logits, stats = model(torch.tensor([tokens]))
    cfg, T, L = model.cfg, len(tokens), model.cfg.n_layers
    zeros = [[0.0] * L for _ in range(T)]
    per_layer = lambda key, cast: [[cast(stats[l][key][0, t].item()) for l in range(L)] for t in range(T)]
    q = cfg.n_qubits > 0
    return {
        "logits": logits[0].tolist(),
        "S": per_layer("S", float) if q else zeros,
        "h": per_layer("h", float) if q else zeros,
        "rank": per_layer("rank", int),
        "quantum": per_layer("quantum", int) if q else [[0] * L for _ in range(T)],
    }


def acceptable(cfg, ref):
    """Both routes, >= 2 ranks when adaptive, and decision margins (see module doc)."""
    if cfg.n_qubits == 0:
        return True
    S = np.array(ref["S"]); h = np.array(ref["h"]); routes = np.array(ref["quantum"])
    aS = cfg.alpha * S
    if np.min(np.abs(aS - np.round(aS))) < MARGIN or np.min(np.abs(h - cfg.theta)) < MARGIN:
        return False
    if routes.sum() < 2 or (1 - routes).sum() < 2:
        return False
    if cfg.adaptive_rank and len(set(np.array(ref["rank"]).ravel().tolist())) < min(3, cfg.r_max - cfg.r_min + 1):
        return False
    return S.max() - S.min() > 0.3 * cfg.n_qubits / 2


def make(name, overrides, out_dir, tmp_path):
    cfg = Config(**{**Config().to_dict(), **COMMON, **overrides})
    tokens = [VOCAB.index(c) for c in TEXT]
    for seed in range(1000):
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = QTensorFormer(cfg)
        randomize(model, gen)
        export_qtf(model, tmp_path, VOCAB, {"created_by": "tools/train/make_fixtures.py", "seed": seed})
        ref_model, _ = load_qtf(tmp_path, dtype=torch.float64)
        ref = reference(ref_model, tokens)
        if acceptable(cfg, ref):
            break
    else:
        raise RuntimeError(name + ": no acceptable seed")
    os.replace(tmp_path, os.path.join(out_dir, name + ".qtf"))
    fmt = lambda rows: [[float("%.8g" % v) for v in row] for row in rows]
    doc = {"name": name, "seed": seed, "text": TEXT, "tokens": tokens, "atol": 1e-4,
           "logits": fmt(ref["logits"]), "S": fmt(ref["S"]), "h": fmt(ref["h"]),
           "rank": ref["rank"], "quantum": ref["quantum"]}
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    routes = np.array(ref["quantum"])
    print("%-40s seed %3d  quantum %2d/%d  ranks %s  S in [%.3f, %.3f]" % (
        name, seed, routes.sum(), routes.size, sorted(set(np.array(ref["rank"]).ravel().tolist())),
        np.min(ref["S"]), np.max(ref["S"])))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    for name, overrides in CONFIGS.items():
        make(name, overrides, args.out, os.path.join(args.out, ".tmp.qtf"))


if __name__ == "__main__":
    main()
