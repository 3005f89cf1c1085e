"""Writes a random-weight model at one of the scale shapes of issue 13 (vocab 256, context 512, stored
TT rank 8): the same code path as tools/train (Config, QTensorFormer's random init, export_qtf), no
training. Run by bench/scale/models.sh.

    python3 bench/scale/make_model.py --shape d768 --kind dense --out models-scale/d768-dense.qtf
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "train"))

import torch  # noqa: E402

from export import export_qtf  # noqa: E402
from model import Config, QTensorFormer  # noqa: E402

SHAPES = {  # d, layers, heads, d_ff, TT factors of d and of d_ff
    "d512": dict(d_model=512, n_layers=6, n_heads=8, d_ff=2048, d_factors=[8, 8, 8], ff_factors=[8, 16, 16]),
    "d768": dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, d_factors=[8, 12, 8], ff_factors=[12, 16, 16]),
}
KINDS = {
    # plain dense baseline: GELU, no quantum parts
    "dense": dict(tensorized=0, n_qubits=0, adaptive_rank=0, quantum_attention=0, activation="gelu"),
    # TT linears at stored rank 8, GELU, no quantum parts (every token at rank 8)
    "tt": dict(tensorized=1, n_qubits=0, adaptive_rank=0, quantum_attention=0, activation="gelu"),
    # TT plus the quantum parts of the seed config (entropy meter, adaptive rank 2..8, quantum
    # attention, DARUAN activation)
    "ttq": dict(tensorized=1),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--kind", choices=sorted(KINDS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cfg = Config(**{**Config().to_dict(), "vocab_size": 256, "context": 512, "tt_rank": 8, "r_max": 8,
                    **SHAPES[args.shape], **KINDS[args.kind]})
    model = QTensorFormer(cfg).eval()
    tokens = [chr(i) for i in range(256)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    size = len(export_qtf(model, args.out, tokens, {"source": "bench/scale/make_model.py random init",
                                                     "seed": args.seed}))
    params = sum(p.numel() for p in model.parameters())
    print("%s: %s %s, %.2fM params, %.1f MiB" % (args.out, args.shape, args.kind, params / 1e6, size / 2**20))


if __name__ == "__main__":
    main()
