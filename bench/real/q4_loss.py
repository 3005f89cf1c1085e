#!/usr/bin/env python3
"""Quantisation loss of the real story models in qtf and in llama.cpp, side by side (docs/quantize.md, "Loss
on the real story models, side by side with llama.cpp"): stories260K and TinyStories-656K on the held-out
stories 301-500 of tinystories-valid-1-500.txt (the split of tools/train/budget_frontier.py).

Per model:
  1. GGUF f32 from llama.cpp's own converters (as bench/real/proof.py prepare makes them), then
     `llama-quantize --pure` to Q8_0, Q4_0 and Q4_K_M (rows shorter than 256 fall back: see the log);
  2. `qtf eval --doc-sep` (qtf's protocol: each story after its BOS, windows of -c tokens from an empty
     cache, every target scored) on the shipped .qtf, on `qtf quantize --type q8|q4` of it and on the
     GGUFs, which qtf reads as they are (Q8_0 as i8, Q4_0 as q4);
  3. llama.cpp's protocol, in both engines on the same ids: llama-perplexity -c C on the stories joined by
     newlines (one token stream, BOS first; chunks of C tokens, each with BOS in its first place, scoring
     the targets of positions C/2 .. C-2); the f32 run saves its ids and log-probs
     (--kl-divergence-base), the quantised runs report KL(f32 || quantised) against them
     (--kl-divergence). qtf then runs the ids from that file, chunk by chunk the same way, through the
     Python binding: its loss on the same targets, KL(qtf f32 || qtf X), and KL(llama.cpp f32 || qtf f32)
     (how far the two engines' f32 forward passes are apart, from llama.cpp's 16-bit log-probs).

    python3 bench/real/q4_loss.py --qtf build/qtf --llama-cpp ../ext/llama.cpp \
        --llama2c-converter ../ext/proof/conv/llama-convert-llama2c-to-ggml --work /tmp/q4loss \
        [--ctx 512] [--threads 1] [--json out.json]

llama-perplexity is llama.cpp's tools/perplexity (`cmake --build build --target llama-perplexity`). Needs
numpy and the Python binding's libqtf.so next to --qtf (-DQTF_BUILD_SHARED=ON); the TinyStories-656K
conversion needs torch (/usr/bin/python3). Prints a Markdown table; --json writes every number.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

import budget  # noqa: E402
import budget_frontier  # noqa: E402
from proof import llama_bin, real_paths, sh, with_embedding  # noqa: E402
from qtf_format import read_qtf  # noqa: E402

MODELS = {"stories260K": "models/stories260k.qtf", "TinyStories-656K": "models/tinystories-656k.qtf"}
# --pure: every matrix that type; "Q4_0-default": llama-quantize's own Q4_0 recipe (output.weight Q6_K, here
# Q8_0: rows of 64/128 are no multiple of Q6_K's 256; qtf's q4 keeps its head q8 too)
LLAMA_TYPES = ("Q8_0", "Q4_0", "Q4_0-default", "Q4_K_M")


def ggufs(args, name):
    """{type: path} of the model's GGUF files under --work, made once."""
    P = real_paths(args.real)
    f32 = os.path.join(args.work, name + "-f32.gguf")
    if not os.path.exists(f32):
        if name == "stories260K":
            sh([args.llama2c_converter, "--copy-vocab-from-model", P["s260_tok"], "--llama2c-model", P["s260_bin"],
                "--llama2c-output-model", f32])
            # The converter writes context_length 128 whatever the checkpoint's seq_len (512), and qtf keeps
            # to a file's context: set it to the checkpoint's, in place, with gguf-py's own script.
            seq_len = int(np.fromfile(P["s260_bin"], np.int32, 7)[6])
            env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_cpp, "gguf-py"))
            sh([args.python, os.path.join(args.llama_cpp, "gguf-py", "gguf", "scripts", "gguf_set_metadata.py"),
                "--force", f32, "llama.context_length", str(seq_len)], env=env)
        else:
            src = os.path.join(args.work, name + "-embed")
            if not with_embedding(P["ts656_dir"], src):
                src = P["ts656_dir"]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, "hf_stub"),
                                                              os.path.join(args.llama_cpp, "gguf-py")]))
            sh([args.python, os.path.join(HERE, "hf_stub", "run_convert_hf.py"),
                os.path.join(args.llama_cpp, "convert_hf_to_gguf.py"), src, "--outtype", "f32", "--outfile", f32], env=env)
    out = {"f32": f32}
    for t in LLAMA_TYPES:
        p = os.path.join(args.work, "%s-%s.gguf" % (name, t))
        if not os.path.exists(p):
            pure = [] if t.endswith("-default") else ["--pure"]
            r = sh([llama_bin(args, "llama-quantize")] + pure + [f32, p, t.split("-")[0]])
            with open(p + ".log", "wb") as f:
                f.write(r.stdout + r.stderr)
        out[t] = p
    return out


def quantize_log(path):
    """'q5_0 x32, f16 x5': what llama-quantize wrote, per tensor type."""
    try:
        text = open(path + ".log", encoding="utf-8", errors="replace").read()
    except OSError:
        return ""
    kinds = re.findall(r"converting to (\w+)", text)  # the type written (after any fallback)
    return ", ".join("%s x%d" % (k, kinds.count(k)) for k in sorted(set(kinds), key=kinds.index))


def qtf_eval(args, model, text):
    r = sh([args.qtf, "eval", "-m", model, "-f", text, "-c", str(args.ctx), "--max-tokens", "0",
            "--doc-sep", budget.DOC_SEP, "--json"])
    j = json.loads(r.stdout)
    return {"loss": j["loss"], "scored": j["scored"]}


def run_perplexity(args, model, text, kld, base):
    """llama-perplexity's loss (ln of its PPL over every chunk) and, against the f32 run's file, KL(f32 || model) and how often
    the top token is the same. Read from the last chunk's row (the running means over every chunk, which
    the final summary repeats). The log is kept next to the model, its first line the command, and reused
    for the same command."""
    cmd = [llama_bin(args, "llama-perplexity"), "-m", model, "-f", text, "-c", str(args.ctx), "-b", str(args.ctx),
           "-t", str(args.threads), "--kl-divergence-base", kld] + ([] if base else ["--kl-divergence"])
    path = model + (".ppl-base.log" if base else ".ppl.log")
    fresh = os.path.exists(path) and open(path, encoding="utf-8").readline().rstrip("\n") == " ".join(cmd)
    if not (fresh and (not base or os.path.exists(kld))):  # a log of the same command is reused
        r = sh(cmd)
        with open(path, "w") as f:
            f.write(" ".join(cmd) + "\n" + (r.stdout + r.stderr).decode(errors="replace"))
    log = open(path, encoding="utf-8").read()
    if base:  # the running PPL after the last chunk, "[140]4.2201" on stdout (its "Final estimate" log line
        # on stderr is sometimes lost at exit)
        return {"loss": float(np.log(float(re.findall(r"\[\d+\]([0-9.]+)", log)[-1])))}
    num = r"([-0-9.]+)\s*±\s*[0-9.]+\s*%?\s*"
    rows = re.findall(r"^\s*\d+\s+" + num * 5 + "$", log, re.M)
    ppl, _, kld_mean, _, same = rows[-1]
    return {"loss": float(np.log(float(ppl))), "kl": float(kld_mean), "same_top": float(same) / 100}


def read_kld_base(path):
    """llama-perplexity's --kl-divergence-base file: n_ctx, n_vocab, n_chunk, the ids (n_chunk * n_ctx), then
    per chunk, per scored position (n_ctx/2 .. n_ctx-2) the log-probs as 2 floats (scale, min) and n_vocab
    16-bit steps above min, padded to an even count (tools/perplexity/perplexity.cpp, log_softmax)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"_logits_", path
    n_ctx, n_vocab, n_chunk = np.frombuffer(raw, np.int32, 3, 8)
    off = 20
    ids = np.frombuffer(raw, np.int32, n_chunk * n_ctx, off).reshape(n_chunk, n_ctx)
    off += 4 * n_chunk * n_ctx
    nv = 2 * ((n_vocab + 1) // 2) + 4
    n_pos = n_ctx - 1 - n_ctx // 2
    u = np.frombuffer(raw, np.uint16, n_chunk * n_pos * nv, off).reshape(n_chunk, n_pos, nv)
    head = u[:, :, :4].copy().view(np.float32)  # [scale, min_log_prob]
    lp = head[:, :, 1:2].astype(np.float64) + head[:, :, 0:1] * u[:, :, 4:4 + n_vocab]
    return int(n_ctx), ids, lp


def engine_chunks(binding, path, ids, bos):
    """qtf's log-probs at positions C/2 .. C-2 of every chunk (BOS in its first place), as llama-perplexity."""
    n_chunk, C = ids.shape
    first = C // 2
    m = binding.Model(path)
    out = np.zeros((n_chunk, C - 1 - first, m.vocab_size))
    for i in range(n_chunk):
        t = [int(v) for v in ids[i]]
        t[0] = bos
        ctx = m.context(n_ctx=C)
        ctx.decode(t[:first + 1])
        out[i, 0] = ctx.log_softmax()
        for j in range(first + 1, C - 1):
            ctx.decode([t[j]])
            out[i, j - first] = ctx.log_softmax()
        ctx.close()
    m.close()
    return out


def nll(lp, ids):
    C = ids.shape[1]
    tgt = ids[:, C // 2 + 1:]
    return float(-np.take_along_axis(lp, tgt[:, :, None], 2).mean())


def kl(p_lp, q_lp):
    return float((np.exp(p_lp) * (p_lp - q_lp)).sum(-1).mean())


def measure(args, name, qtf_model, binding):
    work = args.work
    g = ggufs(args, name)
    text_sep = os.path.join(work, name + "-heldout.txt")
    stories = budget_frontier.heldout_file(args.text, args.heldout, text_sep)
    # llama.cpp's tokenizer aborts on a character the vocabulary lacks when it has no byte tokens
    # (TinyStories-656K: std::out_of_range): such stories are left out, of both protocols' texts.
    meta, _ = read_qtf(qtf_model)
    keep = [s for s in stories if not budget.lacks_token(meta, *budget.tokenize(args.qtf, qtf_model, s, work))]
    if len(keep) < len(stories):
        with open(text_sep, "w", encoding="utf-8") as f:
            f.write("".join(s + budget.DOC_SEP for s in keep))
    text_plain = os.path.join(work, name + "-heldout-plain.txt")
    with open(text_plain, "w", encoding="utf-8") as f:
        f.write("\n".join(keep) + "\n")
    res = {"model": name, "qtf_file": os.path.relpath(qtf_model, ROOT), "gguf": g, "ctx": args.ctx, "heldout": args.heldout,
           "stories": len(stories), "stories_dropped": len(stories) - len(keep),
           "llama_quantize": {t: quantize_log(g[t]) for t in LLAMA_TYPES}}

    # qtf's own protocol (qtf eval --doc-sep)
    files = {"qtf f32": qtf_model}
    for t in ("q8", "q4"):
        p = os.path.join(work, "%s-qtf-%s.qtf" % (name, t))
        sh([args.qtf, "quantize", qtf_model, p, "--type", t])
        files["qtf " + t] = p
    for t in ("f32", "Q8_0", "Q4_0", "Q4_0-default"):
        files["GGUF " + t] = g[t]
    res["qtf_eval"] = {k: dict(qtf_eval(args, p, text_sep), bytes=os.path.getsize(p)) for k, p in files.items()}

    # llama.cpp's protocol, llama-perplexity
    kld = os.path.join(work, name + "-f32.kld")
    res["llama_cpp"] = {"f32": dict(run_perplexity(args, g["f32"], text_plain, kld, True), bytes=os.path.getsize(g["f32"]))}
    for t in LLAMA_TYPES:
        res["llama_cpp"][t] = dict(run_perplexity(args, g[t], text_plain, kld, False), bytes=os.path.getsize(g[t]))

    # the same ids and targets through qtf
    C, ids, llama_lp = read_kld_base(kld)
    lps = {k: engine_chunks(binding, p, ids, int(ids[0, 0])) for k, p in files.items()}  # ids[0, 0]: the text's BOS
    base = lps["GGUF f32"]
    res["qtf_on_llama_ids"] = {k: {"loss": nll(lp, ids), "kl": kl(base, lp)} for k, lp in lps.items()}
    res["kl_llama_f32_to_qtf_f32"] = kl(llama_lp, base)
    res["llama_f32_loss_from_file"] = nll(llama_lp, ids)
    res["scored"] = int(ids.shape[0] * (C - 1 - C // 2))
    # Does qtf's tokenizer give llama.cpp's ids? (the stories as one text; llama.cpp's start with BOS)
    m = binding.Model(g["f32"])
    own = [int(v) for v in m.tokenize(open(text_plain, encoding="utf-8").read())]
    m.close()
    theirs = [int(v) for v in ids.reshape(-1)[1:]]
    res["qtf_ids_match_llama_ids"] = own[:len(theirs)] == theirs
    return res


def table(results):
    rows = ["| model | engine, protocol | f32 loss | q8 cost | q4 cost | other | KL q8 | KL q4 |",
            "|---|---|---:|---:|---:|---|---:|---:|"]
    for r in results:
        e = r["qtf_eval"]
        f = e["qtf f32"]["loss"]
        rows.append("| %s | qtf eval --doc-sep, shipped .qtf + `qtf quantize` | %.4f | %+.4f | %+.4f | | | |" % (
            r["model"], f, e["qtf q8"]["loss"] - f, e["qtf q4"]["loss"] - f))
        f = e["GGUF f32"]["loss"]
        rows.append("| | qtf eval --doc-sep, llama.cpp's GGUFs (Q8_0, Q4_0) | %.4f | %+.4f | %+.4f | | | |" % (
            f, e["GGUF Q8_0"]["loss"] - f, e["GGUF Q4_0"]["loss"] - f))
        l = r["llama_cpp"]
        f = l["f32"]["loss"]
        rows.append("| | llama-perplexity -c %d (Q8_0, Q4_0 --pure) | %.4f | %+.4f | %+.4f | Q4_0 default %+.4f (KL %.4f); "
                    "Q4_K_M %+.4f (KL %.4f) | %.4f | %.4f |" % (
                        r["ctx"], f, l["Q8_0"]["loss"] - f, l["Q4_0"]["loss"] - f, l["Q4_0-default"]["loss"] - f,
                        l["Q4_0-default"]["kl"], l["Q4_K_M"]["loss"] - f, l["Q4_K_M"]["kl"], l["Q8_0"]["kl"], l["Q4_0"]["kl"]))
        q = r["qtf_on_llama_ids"]
        f = q["GGUF f32"]["loss"]
        rows.append("| | qtf on llama-perplexity's ids and targets (GGUF Q8_0, Q4_0 --pure) | %.4f | %+.4f | %+.4f | "
                    "Q4_0 default %+.4f (KL %.4f) | %.4f | %.4f |" % (
                        f, q["GGUF Q8_0"]["loss"] - f, q["GGUF Q4_0"]["loss"] - f, q["GGUF Q4_0-default"]["loss"] - f,
                        q["GGUF Q4_0-default"]["kl"], q["GGUF Q8_0"]["kl"], q["GGUF Q4_0"]["kl"]))
        rows.append("| | qtf on llama-perplexity's ids and targets (`qtf quantize` q8, q4) | %.4f | %+.4f | %+.4f | | %.4f | %.4f |" % (
            q["qtf f32"]["loss"], q["qtf q8"]["loss"] - q["qtf f32"]["loss"], q["qtf q4"]["loss"] - q["qtf f32"]["loss"],
            q["qtf q8"]["kl"], q["qtf q4"]["kl"]))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qtf", default=None)
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--llama2c-converter", help="llama-convert-llama2c-to-ggml (default: in --llama-cpp's build/bin)")
    ap.add_argument("--real", default=os.path.join(ROOT, "..", "shared", "data", "real"))
    ap.add_argument("--text", default=budget_frontier.TEXT)
    ap.add_argument("--heldout", default="301-500")
    ap.add_argument("--work", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json")
    args = ap.parse_args()
    args.qtf = budget.find_qtf(args.qtf)
    args.llama2c_converter = args.llama2c_converter or llama_bin(args, "llama-convert-llama2c-to-ggml")
    binding = budget.engine_binding(args.qtf)
    if binding is None:
        sys.exit("the Python binding needs libqtf.so next to %s (-DQTF_BUILD_SHARED=ON)" % args.qtf)
    os.makedirs(args.work, exist_ok=True)
    lib = os.path.join(args.llama_cpp, "build", "bin")  # a converter built elsewhere finds llama.cpp's libraries
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, os.environ.get("LD_LIBRARY_PATH")]))
    results = [measure(args, n, os.path.join(ROOT, MODELS[n]), binding) for n in args.models.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))
    for r in results:
        if r["stories_dropped"]:
            print("%s: %d of %d held-out stories (the others have characters its vocabulary lacks)" % (
                r["model"], r["stories"] - r["stories_dropped"], r["stories"]))
        print("%s: %d targets scored in llama.cpp's protocol; KL(llama.cpp f32 || qtf f32) %.2e; qtf's tokenizer "
              "gives llama.cpp's ids: %s; llama-quantize: %s" % (
                  r["model"], r["scored"], r["kl_llama_f32_to_qtf_f32"], r["qtf_ids_match_llama_ids"],
                  "; ".join("%s: %s" % kv for kv in r["llama_quantize"].items())))


if __name__ == "__main__":
    main()
