#!/usr/bin/env python3
"""qtf against llama2.c's run.c on the same checkpoint and the same token ids (docs/llama.md).

    python3 tools/convert/compare_llama2c.py --run PATH/run --checkpoint stories260K.bin \
        [--run-logits PATH/run_dump] [--f64] [--other-run-logits NAME=PATH/run_dump_fast] \
        [--starts 1,2,50,150,250,300,400,511] [--steps 256] [--threads-run PATH/runomp] [--json out.json]

You build run.c yourself (it is not part of qtf): `gcc -O3 -o run run.c -lm`. The checkpoint is
converted with tools/convert/llama2c.py into a temporary .qtf and run through libqtf.so (build it with
`cmake --build build --target qtf_shared`; the Python package in python/ loads it).

Token ids in and out of run.c: run.c only takes text, so this script writes a synthetic tokenizer.bin
(NOT the model's own: id 0 -> " ", every other id i -> the one character U+0100+i, all scores 0, so no
merges ever apply) and reads run.c's output back into ids. run.c puts BOS (1) and sentencepiece's dummy
prefix (the id whose piece is " ": 0 here) before a non-empty prompt, so a start id X runs [1, 0, X]; the
start 1 (BOS) runs the empty prompt [1]. qtf runs exactly the same ids.

Checks: (1) greedy: `run -t 0` continues every start for --steps tokens; qtf's argmax continuation must be
identical (run.c stops early if it samples BOS; then qtf's token there must be BOS too). (2) logits, with
--run-logits: a copy of run.c patched to fwrite its logits after every forward() to the file named by the
environment variable RUNC_LOGITS (3 lines in generate(); not shipped here); every position's logits must
agree to --atol (default 1e-4). With --f64, both programs' logits are also compared with a float64
evaluation of the same forward pass (llama.runc_forward, float32 rotary angles as run.c forms them), each to
--atol, and an ideal float32 engine (the same evaluation with every stored value rounded once to float32,
runc_forward(store="float32")) with run.c: what the 1e-4 bound leaves to any float32 implementation;
--other-run-logits compares further run.c builds (e.g. -Ofast -march=native) with the first one,
for scale: how far run.c moves from itself under another compiler's rounding. (3) speed: run.c's own "achieved tok/s" and qtf's tokens/s over the same
greedy runs, single thread (and run.c with OpenMP if --threads-run is given).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

from llama import convert_llama2c, read_llama2c, runc_forward  # noqa: E402
from qtf_format import write_qtf  # noqa: E402


def write_run_tokenizer(path, vocab):
    import struct
    pieces = [b" "] + [chr(0x100 + i).encode() for i in range(1, vocab)]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for p in pieces:
            f.write(struct.pack("<fi", 0.0, len(p)) + p)


def run_c(binary, ckpt, tok, start, steps, env=None):
    """-> (ids of the whole sequence run.c saw, including the prompt; tok/s it reported)."""
    prompt = [1] if start == 1 else [1, 0, start]
    text = "" if start == 1 else chr(0x100 + start)
    n = steps + len(prompt) - 1  # run.c's -n counts positions, prompt included
    args = [binary, ckpt, "-z", tok, "-t", "0", "-n", str(n)] + (["-i", text] if text else [])
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (binary, r.stderr))
    out = r.stdout.rstrip("\n")
    ids = [0 if c == " " else ord(c) - 0x100 for c in out]
    if start != 1:
        assert ids[0] == start, "run.c did not echo the start id"
        ids = ids[1:]
    m = re.search(r"achieved tok/s: ([0-9.]+)", r.stderr)
    return prompt, ids, float(m.group(1)) if m else float("nan")


def qtf_greedy(model, prompt, steps):
    """-> (generated ids, logits of every position [len(prompt) + steps - 1, V], tok/s of the decode loop)."""
    ctx = model.context()
    logits, ids = [], []
    for t in prompt:  # one position at a time: run.c's dump has every position's logits
        ctx.decode([t])
        logits.append(ctx.logits)
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        ids.append(int(np.argmax(logits[-1])))
        ctx.decode([ids[-1]])
        logits.append(ctx.logits)
    dt = time.perf_counter() - t0
    ids.append(int(np.argmax(logits[-1])))
    return ids, np.array(logits), (steps - 1) / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run.c binary (single thread)")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--run-logits", help="run.c patched to dump logits to $RUNC_LOGITS")
    ap.add_argument("--f64", action="store_true", help="also compare both with a float64 evaluation")
    ap.add_argument("--other-run-logits", action="append", default=[], metavar="NAME=PATH",
                    help="another logits-dumping run.c build, compared with --run-logits (for scale)")
    ap.add_argument("--threads-run", help="run.c built with -fopenmp (speed only)")
    ap.add_argument("--starts", default="1,2,50,150,250,300,400,511")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--json")
    args = ap.parse_args()
    import qtf  # python/qtf over libqtf.so

    data = open(args.checkpoint, "rb").read()
    h, weights = read_llama2c(data)
    res = {"checkpoint": os.path.basename(args.checkpoint), "bytes": len(data), "header": h, "runs": []}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tok = os.path.join(tmp, "tok_synthetic.bin")
        write_run_tokenizer(tok, h["vocab_size"])
        qpath = os.path.join(tmp, "model.qtf")
        meta, tensors, _ = convert_llama2c(data)
        write_qtf(qpath, meta, tensors)
        model = qtf.Model(qpath)
        env1 = dict(os.environ, OMP_NUM_THREADS="1")
        for start in [int(s) for s in args.starts.split(",")]:
            prompt, c_ids, c_tps = run_c(args.run, args.checkpoint, tok, start, args.steps, env1)
            q_ids, q_logits, q_tps = qtf_greedy(model, prompt, args.steps)
            n = len(c_ids)
            same = q_ids[:n] == c_ids and (n == args.steps or q_ids[n] == 1)
            run = {"start": start, "prompt": prompt, "run_c_tokens": n, "greedy_identical": same,
                   "first_difference": next((i for i, (a, b) in enumerate(zip(q_ids, c_ids)) if a != b), None),
                   "run_c_tok_s": c_tps, "qtf_tok_s_python_loop": q_tps, "ids": c_ids[:32]}
            ok &= same
            if args.run_logits:
                dump = os.path.join(tmp, "logits.bin")
                run_c(args.run_logits, args.checkpoint, tok, start, args.steps, dict(env1, RUNC_LOGITS=dump))
                c_logits = np.fromfile(dump, dtype="<f4").reshape(-1, h["vocab_size"])
                m = min(len(c_logits), len(q_logits))
                run["logits_positions"] = m
                diff = np.abs(c_logits[:m] - q_logits[:m]).max(1)
                run["logits_max_abs_diff"] = float(diff.max())
                run["logits_worst_position"] = int(diff.argmax())
                run["logits_positions_over_atol"] = int((diff > args.atol).sum())
                ok &= run["logits_max_abs_diff"] <= args.atol
                if args.f64:
                    ref = runc_forward(h, weights, (prompt + c_ids)[:m], angles="float32")
                    run["f64_max_abs_diff_qtf"] = float(np.abs(q_logits[:m] - ref).max())
                    run["f64_max_abs_diff_run_c"] = float(np.abs(c_logits[:m] - ref).max())
                    ideal = runc_forward(h, weights, (prompt + c_ids)[:m], angles="float32", store="float32")
                    run["ideal_f32_max_abs_diff_f64"] = float(np.abs(ideal - ref).max())
                    idiff = np.abs(ideal - c_logits[:m]).max(1)
                    run["ideal_f32_max_abs_diff_run_c"] = float(idiff.max())
                    run["ideal_f32_positions_over_atol"] = int((idiff > args.atol).sum())
                    ok &= run["f64_max_abs_diff_qtf"] <= args.atol
                for spec in args.other_run_logits:
                    name, path = spec.rsplit("=", 1)
                    run_c(path, args.checkpoint, tok, start, args.steps, dict(env1, RUNC_LOGITS=dump))
                    o_logits = np.fromfile(dump, dtype="<f4").reshape(-1, h["vocab_size"])
                    k = min(len(o_logits), len(c_logits))
                    run.setdefault("other_run_c_max_abs_diff", {})[name] = float(np.abs(o_logits[:k] - c_logits[:k]).max())
            if args.threads_run:
                _, _, run["run_c_omp_tok_s"] = run_c(args.threads_run, args.checkpoint, tok, start, args.steps)
            res["runs"].append(run)
            extra = ""
            if "logits_max_abs_diff" in run:
                extra = " | logits max |diff| %.2e over %d positions (%d over %g)" % (
                    run["logits_max_abs_diff"], run["logits_positions"], run["logits_positions_over_atol"], args.atol)
            if "f64_max_abs_diff_qtf" in run:
                extra += " | float64: qtf %.2e, run.c %.2e" % (run["f64_max_abs_diff_qtf"], run["f64_max_abs_diff_run_c"])
                extra += " | ideal float32 engine: vs float64 %.2e, vs run.c %.2e (%d over %g)" % (
                    run["ideal_f32_max_abs_diff_f64"], run["ideal_f32_max_abs_diff_run_c"],
                    run["ideal_f32_positions_over_atol"], args.atol)
            for name, v in run.get("other_run_c_max_abs_diff", {}).items():
                extra += " | %s vs run.c %.2e" % (name, v)
            print("start %3d: greedy %s over %d tokens%s | run.c %.0f tok/s" % (
                start, "identical" if same else "DIFFERENT at %s" % run["first_difference"], n, extra, c_tps))
    res["ok"] = bool(ok)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print("compare_llama2c: %s" % ("all identical" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
