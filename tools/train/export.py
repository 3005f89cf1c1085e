"""Writes a trained Q-TensorFormer as a .qtf v1 file (docs/format.md), and reads one back into PyTorch.

    python3 export.py --ckpt run/ckpt.pt --out model.qtf [--dtype f16]
"""
import argparse

import numpy as np
import torch

import llama
from model import Config, QTensorFormer
from qtf_format import read_qtf, tokenizer_and_provenance, write_model


def tensor_map(model):
    """[(qtf tensor name, torch tensor)] in file order; the one place that names the file's tensors."""
    cfg, out = model.cfg, []

    def linear(name, lin):
        if cfg.tensorized:
            out.extend(("%s.core.%d" % (name, k), c) for k, c in enumerate(lin.cores))
            out.append((name + ".b", lin.bias))
        else:
            out.extend([(name + ".w", lin.weight), (name + ".b", lin.bias)])

    out += [("tok_emb", model.tok_emb.weight), ("pos_emb", model.pos_emb.weight)]
    for l, blk in enumerate(model.blocks):
        p = "blk.%d." % l
        out += [(p + "ln1.w", blk.ln1.weight), (p + "ln1.b", blk.ln1.bias),
                (p + "ln2.w", blk.ln2.weight), (p + "ln2.b", blk.ln2.bias)]
        if cfg.n_qubits > 0:
            out += [(p + "enc.w", blk.enc.weight), (p + "enc.b", blk.enc.bias), (p + "qparams", blk.qparams),
                    (p + "qout.w", blk.qout.weight), (p + "qout.b", blk.qout.bias)]
        for n in "qkvo":
            linear(p + "attn." + n, getattr(blk, n))
        if cfg.n_qubits > 0 and cfg.quantum_attention:
            out += [(p + "qattn.w_qk", blk.w_qk), (p + "qattn.var", blk.qvar), (p + "qattn.beta", blk.beta)]
        linear(p + "ffn.up", blk.up)
        linear(p + "ffn.down", blk.down)
        if cfg.activation == "daruan":
            act = blk.act
            out += [(p + "ffn.daruan." + n, getattr(act, n)) for n in ("theta", "w", "b", "a", "e", "s")]
    out += [("lnf.w", model.lnf.weight), ("lnf.b", model.lnf.bias)]
    if not cfg.tied_embeddings:
        out.append(("head.w", model.head))
    return out


CONFIG_KEYS = {  # Config field -> metadata key
    "vocab_size": "model.vocab_size", "d_model": "model.d_model", "n_layers": "model.n_layers",
    "n_heads": "model.n_heads", "d_ff": "model.d_ff", "context": "model.context",
    "tensorized": "model.tensorized", "d_factors": "model.tt.d_factors", "ff_factors": "model.tt.ff_factors",
    "tt_rank": "model.tt.rank", "r_min": "model.r_min", "r_max": "model.r_max", "alpha": "model.alpha",
    "theta": "model.theta", "n_qubits": "model.n_qubits", "n_qlayers": "model.n_qlayers",
    "adaptive_rank": "model.adaptive_rank", "quantum_attention": "model.quantum_attention",
    "activation": "model.activation", "daruan_depth": "model.daruan_depth",
    "tied_embeddings": "model.tied_embeddings", "ln_eps": "model.ln_eps",
}


def model_meta(cfg, tokens, provenance=None):
    meta = {"qtf.arch": "qtensorformer"}
    for field, key in CONFIG_KEYS.items():
        v = getattr(cfg, field)
        meta[key] = float(v) if field in ("alpha", "theta", "ln_eps") else (list(v) if isinstance(v, list) else v)
    return tokenizer_and_provenance(meta, "char", tokens, provenance)


def export_qtf(model, path, tokens, provenance=None, dtype="f32"):
    return write_model(path, model_meta(model.cfg, tokens, provenance), tensor_map(model), dtype)


def load_qtf(path, dtype=torch.float32):
    """Reads a .qtf into a QTensorFormer (eval mode); returns (model, meta)."""
    meta, tensors = read_qtf(path)
    if llama.is_llama_meta(meta):  # block options (docs/llama.md): the reference lives in llama.py
        return llama.load_qtf(path, dtype)
    kwargs = {}
    for field, key in CONFIG_KEYS.items():
        if key in meta:
            kwargs[field] = meta[key]
    model = QTensorFormer(Config(**kwargs)).to(dtype).eval()
    if model.cfg.tensorized:  # bond ranks come from the core shapes (they may differ per matrix)
        from model import TTLinear
        for blk_i, blk in enumerate(model.blocks):
            for n, prefix in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.o"),
                              ("up", "ffn.up"), ("down", "ffn.down")):
                lin = getattr(blk, n)
                names = ["blk.%d.%s.core.%d" % (blk_i, prefix, k) for k in range(len(lin.cores))]
                if all(nm in tensors for nm in names):
                    ranks = [1] + [int(tensors[nm].shape[3]) for nm in names[:-1]] + [1]
                    if ranks != lin.ranks:
                        setattr(blk, n, TTLinear(lin.in_factors, lin.out_factors, 1, ranks=ranks).to(dtype))
    with torch.no_grad():
        for name, param in tensor_map(model):
            a = tensors[name]
            if tuple(a.shape) != tuple(param.shape):
                raise ValueError("%s: shape %s in file, %s in model" % (name, a.shape, tuple(param.shape)))
            param.copy_(torch.from_numpy(a.astype(np.float32)))
    return model, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    args = ap.parse_args()
    ck = torch.load(args.ckpt, map_location="cpu")
    model = QTensorFormer(Config(**ck["config"]))
    model.load_state_dict(ck["model"])
    data = export_qtf(model, args.out, ck["tokens"], ck.get("provenance"), args.dtype)
    read_qtf(args.out)  # verify what was written
    print("wrote %s (%d bytes)" % (args.out, len(data)))


if __name__ == "__main__":
    main()
