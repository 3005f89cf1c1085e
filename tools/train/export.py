"""Writes a trained Q-TensorFormer as a .qtf v1 file (docs/format.md), and reads one back into PyTorch.

    python3 export.py --ckpt run/ckpt.pt --out model.qtf [--dtype f16]
    python3 export.py --trim IN.qtf --out OUT.qtf [--iters 8]   # cut TT bonds no token selects (trim_unused)

train.py and compress.py trim on export by default (--no_trim keeps every stored component).
"""
import argparse

import numpy as np
import torch
import torch.nn as nn

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


TT_LINEARS = ("q", "k", "v", "o", "up", "down")


def trim_unused(model, hists):
    """Cuts every TT bond of layer l to the highest run-time rank any token selected in layer l.

    hists: per layer {rank: tokens} (train.rank_histograms, e.g. over the validation split). Stored bond
    components above that rank were never used: dead weight in the file (an adaptive-rank model whose
    alpha cannot reach r_max). A token of rank r uses bond indices < min(r, r_k) (MODEL.md), so the model
    is unchanged for every token whose rank is at most the highest one seen; a token that would select a
    higher rank later runs at the trimmed one. Fixed-rank and dense models are left alone.
    Returns {layer: (stored rank, rank kept)} of the layers trimmed."""
    if not model.cfg.tensorized or not hists:
        return {}
    out = {}
    for l, (blk, h) in enumerate(zip(model.blocks, hists)):
        used = max((int(r) for r, c in h.items() if c), default=0)
        lins = [getattr(blk, n) for n in TT_LINEARS]
        stored = max(max(lin.ranks[1:-1], default=1) for lin in lins)
        if used < 1 or used >= stored:
            continue
        for lin in lins:
            ranks = [1] + [min(r, used) for r in lin.ranks[1:-1]] + [1]
            with torch.no_grad():
                for k in range(len(lin.cores)):
                    lin.cores[k] = nn.Parameter(lin.cores[k][:ranks[k], :, :, :ranks[k + 1]].clone())
            lin.ranks = ranks
        out[l] = (stored, used)
    return out


def describe_trim(trimmed):
    return ", ".join("layer %d: %d -> %d" % (l, a, b) for l, (a, b) in sorted(trimmed.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt")
    ap.add_argument("--trim", metavar="IN.qtf", help="re-export IN.qtf with the TT bond components that no "
                    "token selects on the validation split cut (trim_unused)")
    ap.add_argument("--iters", type=int, default=8, help="--trim: validation batches of 64 x context to count ranks on")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    args = ap.parse_args()
    if args.trim:
        import data
        import train
        model, meta = load_qtf(args.trim)
        vocab = meta["tokenizer.tokens"]
        text = data.load_text(data.data_path(args.data))
        _, val_ids = data.split(data.encode(text, vocab))
        hists = train.evaluate(model, val_ids, 64, model.cfg.context, args.iters, "cpu")[2]
        trimmed = trim_unused(model, hists)
        prov = {k[len("provenance."):]: v for k, v in meta.items() if k.startswith("provenance.")}
        if trimmed:
            prov["trimmed"] = describe_trim(trimmed)
        blob = export_qtf(model, args.out, vocab, prov, args.dtype)
        read_qtf(args.out)
        print("ranks %s; trimmed: %s; wrote %s (%d bytes)" % (train.format_histograms(hists),
                                                           describe_trim(trimmed) or "nothing", args.out, len(blob)))
        return
    if not args.ckpt:
        raise SystemExit("--ckpt or --trim is required")
    ck = torch.load(args.ckpt, map_location="cpu")
    model = QTensorFormer(Config(**ck["config"]))
    model.load_state_dict(ck["model"])
    data = export_qtf(model, args.out, ck["tokens"], ck.get("provenance"), args.dtype)
    read_qtf(args.out)  # verify what was written
    print("wrote %s (%d bytes)" % (args.out, len(data)))


if __name__ == "__main__":
    main()
