#!/usr/bin/env python3
"""GGUF's K, IQ3 and IQ4 kinds in qtf against llama.cpp's own files and ggml's own dequantization
(docs/llama.md, "GGUF (llama.cpp)"). Per file:
  1. llama-quantize of a GGUF f32 made by llama.cpp's llama2.c converter: with --pure (every matrix that
     type) on a random model whose rows are multiples of 256 (d 256, d_ff 768: every super-block fits), and
     its own recipes (Q2_K, Q3_K_S/M, IQ3_XXS/S/M, IQ4_XS, Q4_K_M) on stories260K, whose rows of 64 and 172 fall
     back to other types (the table lists what it wrote);
  2. every tensor as ggml dequantizes it (bench/real/ggml_dequant.c, ggml's to_float) against `qtf convert
     --gguf-f32` of the same file: bit for bit, and against the default import (q8, a scale per row): the
     largest error relative to its row's scale;
  3. the random model: each file's matrices' relative RMS error against the f32 weights, as stored and as the q8
     and q4 (--gguf-q4) imports hold them; stories260K: `qtf eval` held-out loss (stories 301-500, qtf's
     protocol as q4_loss.py) of each file imported as q8 (default), q4 and f32, against the f32 GGUF's
     (windows of 512 tokens).

    cc -O2 bench/real/ggml_dequant.c -I LLAMA/ggml/include -L LLAMA/build/bin -lggml-base -o /tmp/ggml_dequant
    LD_LIBRARY_PATH=LLAMA/build/bin python3 bench/real/gguf_types.py --qtf build/qtf --llama-cpp LLAMA \
        --dequant /tmp/ggml_dequant --work /tmp/gguftypes [--json out.json]

LLAMA: a llama.cpp tree with llama-quantize, llama-imatrix and llama-convert-llama2c-to-ggml built (outside the
project). The IQ1/IQ2 kinds are quantized with an importance matrix (llama-imatrix on stories 1-100), as
llama-quantize requires.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bench", "peers"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

import budget_frontier  # noqa: E402
from llama2c_peer import write_checkpoint  # noqa: E402
from proof import llama_bin, real_paths, sh  # noqa: E402
from qtf_format import read_qtf  # noqa: E402

NAMES = {"token_embd.weight": "tok_emb", "output_norm.weight": "lnf.w", "output.weight": "head.w"}
PARTS = {"attn_norm": "ln1.w", "ffn_norm": "ln2.w", "attn_q": "attn.q.w", "attn_k": "attn.k.w",
         "attn_v": "attn.v.w", "attn_output": "attn.o.w", "ffn_gate": "ffn.gate.w", "ffn_up": "ffn.up.w",
         "ffn_down": "ffn.down.w"}
TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_M", "IQ3_XXS", "IQ3_S",
         "IQ4_NL", "IQ4_XS")  # --pure, the random model
RECIPES = ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ2_XXS", "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ4_XS", "Q4_K_M")  # its own mixes on
# stories260K (IQ4_NL: refused, 172 % 32)
NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_M")  # llama-quantize refuses these without one
# (its IQ2_S recipe writes IQ2_XS tensors; IQ2_M writes IQ2_S)


def set_u32(path, key, value):
    """Overwrites the u32 metadata value of key in a GGUF file, in place (its length-prefixed name, type 4)."""
    data = bytearray(open(path, "rb").read())
    k = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", 4)
    at = data.find(k)
    if at < 0:
        sys.exit("%s: no u32 key %s" % (path, key))
    data[at + len(k):at + len(k) + 4] = struct.pack("<I", value)
    open(path, "wb").write(data)


def qtf_name(g):
    if g in NAMES:
        return NAMES[g]
    _, layer, part, _ = g.split(".")
    return "blk.%s.%s" % (layer, PARTS[part])


def ggml_values(dequant, path, out):
    r = sh([dequant, path, out])
    types = {}
    for line in r.stdout.decode().split("\n"):
        if line.strip():
            name, ty, _ = line.split()
            types[name] = ty
    vals = {}
    with open(out, "rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        n = struct.unpack_from("<I", data, at)[0]
        name = data[at + 4:at + 4 + n].decode()
        count = struct.unpack_from("<Q", data, at + 4 + n)[0]
        at += 12 + n
        vals[name] = np.frombuffer(data, "<f4", count, at)
        at += 4 * count
    return vals, types


def compare(args, gguf, tag, original=None):
    """ggml's values against qtf's imports of gguf: {"types", "f32_equal", "tensors", "q8_worst_over_scale"};
    with original (ggml_values of the f32 GGUF it was quantized from): "rel_rms", the matrices' relative RMS
    error against it as the file holds them and as the q8 and q4 imports do."""
    ref, types = ggml_values(args.dequant, gguf, os.path.join(args.work, tag + "-ggml.bin"))
    got = {}
    for mode, flag in (("f32", ["--gguf-f32"]), ("q8", []), ("q4", ["--gguf-q4"])):
        out = os.path.join(args.work, "%s-%s.qtf" % (tag, mode))
        sh([args.qtf, "convert", gguf, out] + flag)
        got[mode] = read_qtf(open(out, "rb").read())[1]
    equal, worst = 0, 0.0
    for g, v in ref.items():
        q = qtf_name(g)
        a = np.asarray(got["f32"][q], np.float32).reshape(-1)
        equal += int(a.shape == v.shape and np.array_equal(a.view(np.uint32), v.view(np.uint32)))
        b = np.asarray(got["q8"][q], np.float32)
        if b.ndim == 2 and types[g] not in ("F32", "F16", "Q4_0"):  # requantized rows: error / (row max / 127)
            rows = v.reshape(b.shape)
            scale = np.abs(rows).max(1, keepdims=True) / 127
            worst = max(worst, float((np.abs(b - rows) / np.where(scale > 0, scale, 1)).max()))
    counts = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    res = {"types": counts, "f32_equal": equal, "tensors": len(ref), "q8_worst_over_scale": worst}
    if original is not None:
        err, ref2 = {"file": 0.0, "q8": 0.0, "q4": 0.0}, 0.0
        for g, v in ref.items():
            if types[g] in ("F32", "F16"):
                continue
            o = original[g].astype(np.float64)
            ref2 += float((o ** 2).sum())
            err["file"] += float(((v - o) ** 2).sum())
            for mode in ("q8", "q4"):
                err[mode] += float(((np.asarray(got[mode][qtf_name(g)], np.float64).reshape(-1) - o) ** 2).sum())
        res["rel_rms"] = {k: (e / ref2) ** 0.5 for k, e in err.items()}
    return res


def held_out_loss(args, model, heldout, flag=None):
    r = sh([args.qtf, "eval", "-m", model, "-f", heldout, "-c", "512", "--max-tokens", "0", "--doc-sep", "<|endoftext|>",
            "--json"] + ([flag] if flag else []))
    return json.loads(r.stdout)["loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qtf", default=os.path.join(ROOT, "build", "qtf"))
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--dequant", required=True, help="ggml_dequant built from bench/real/ggml_dequant.c")
    ap.add_argument("--work", required=True)
    ap.add_argument("--real", default=os.path.join(ROOT, "..", "shared", "data", "real"))
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    P = real_paths(args.real)
    conv, quant = llama_bin(args, "llama-convert-llama2c-to-ggml"), llama_bin(args, "llama-quantize")
    w = lambda n: os.path.join(args.work, n)  # noqa: E731
    ckpt = w("random-256.bin")
    write_checkpoint(ckpt, 256, 2, 4, 768, 512, 128, seed=3)
    bases = {"random256": w("random256-f32.gguf"), "stories260K": w("stories260K-f32.gguf")}
    for name, src in (("random256", ckpt), ("stories260K", P["s260_bin"])):
        if not os.path.exists(bases[name]):
            sh([conv, "--copy-vocab-from-model", P["s260_tok"], "--llama2c-model", src, "--llama2c-output-model",
                bases[name]])
            # The converter writes context_length 128 whatever the checkpoint's seq_len; qtf keeps to a file's
            # context: set the checkpoint's, in place.
            set_u32(bases[name], "llama.context_length", int(np.fromfile(src, np.int32, 7)[6]))
    imatrix = {}  # llama-imatrix of each base on the first 100 stories (the IQ1/IQ2 kinds require one)
    text = w("imatrix-text.txt")
    with open(text, "w") as f:
        f.write("\n".join(open(P["valid"], encoding="utf-8").read().split("<|endoftext|>")[:100]))
    for name, base in bases.items():
        imatrix[name] = w(name + "-imatrix.dat")
        if not os.path.exists(imatrix[name]):
            sh([llama_bin(args, "llama-imatrix"), "-m", base, "-f", text, "-o", imatrix[name], "-c", "128", "--process-output",
                "--chunks", "32"])
    files = []
    for t in TYPES:  # --pure cannot fall back: stories260K's rows (64, 172) fit no super-block
        # the embedding is read by row, so no importance matrix covers it: Q8_0 for the kinds that need one
        emb = ["--token-embedding-type", "q8_0"] if t in NEEDS_IMATRIX else []
        files.append(("random256", t + " pure", bases["random256"], ["--pure"] + emb, t))
    for t in RECIPES:
        files.append(("stories260K", t, bases["stories260K"], [], t))
    heldout = w("heldout.txt")
    budget_frontier.heldout_file(P["valid"], "301-500", heldout)
    results = {"stories260K f32": {"loss": held_out_loss(args, bases["stories260K"], heldout)}}
    original = ggml_values(args.dequant, bases["random256"], w("random256-f32-ggml.bin"))[0]
    print("| model | file | tensor types llama-quantize wrote | tensors equal to ggml's (--gguf-f32) | "
          "q8 import: worst error / row scale | relative RMS error to f32: file, q8, q4 import | held-out loss "
          "(q8) | (--gguf-q4) | (--gguf-f32) |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|")
    print("| stories260K | f32 | F32 | | | | %.5f | | |" % results["stories260K f32"]["loss"])
    for name, label, base, extra, t in files:
        tag = "%s-%s" % (name, label.replace(" ", "-"))
        out = w(tag + ".gguf")
        im = ["--imatrix", imatrix[name]] if t in NEEDS_IMATRIX else []
        log = sh([quant] + im + extra + [base, out, t])
        c = compare(args, out, tag, original if name == "random256" else None)
        if name == "stories260K":
            c["loss"] = held_out_loss(args, out, heldout)
            c["loss_q4"] = held_out_loss(args, out, heldout, "--gguf-q4")
            c["loss_f32"] = held_out_loss(args, out, heldout, "--gguf-f32")
        c["bytes"] = os.path.getsize(out)
        c["quantize_log_tail"] = log.stdout.decode(errors="replace")[-300:]
        results[name + " " + label] = c
        ty = ", ".join("%s x%d" % kv for kv in sorted(c["types"].items()))
        fmt = lambda k: "%.5f" % c[k] if k in c else ""  # noqa: E731
        rms = "%.4f, %.4f, %.4f" % tuple(c["rel_rms"][k] for k in ("file", "q8", "q4")) if "rel_rms" in c else ""
        print("| %s | %s | %s | %d of %d | %.3f | %s | %s | %s | %s |" % (
            name, label, ty, c["f32_equal"], c["tensors"], c["q8_worst_over_scale"], rms, fmt("loss"), fmt("loss_q4"),
            fmt("loss_f32")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
