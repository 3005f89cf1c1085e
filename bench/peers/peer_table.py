#!/usr/bin/env python3
"""qtf against llama.cpp on the same weights (issue 26, bench/README.md "Peer table"): pp128 and tg128 at
the stories15M / stories42M / stories110M shapes (random weights, vocab 32000), f32, 8-bit and 4-bit, at
the thread counts you give, each run pinned to cores 0..T-1; time to first token and peak RSS; greedy text
compared where both programs run the same bytes.

This script builds nothing from outside. It takes a llama.cpp build you made yourself (bench/README.md
says how; never vendored): a folder with llama-bench, llama-quantize, llama-simple and
llama-convert-llama2c-to-ggml. Weights: a random llama2.c checkpoint per shape (llama2c_peer.py's writer,
numpy), converted by llama.cpp's own converter with the Llama 2 vocabulary (tests/fixtures/llama.cpp-vocab/
ggml-vocab-llama-spm.gguf), so both programs read one GGUF:
  f32  qtf: `qtf convert` of that GGUF            llama.cpp: the GGUF
  8    qtf: `qtf quantize --type q8` (int8, a scale per row)   llama.cpp: `llama-quantize Q8_0` (a scale per 32)
  4    llama.cpp: `llama-quantize --pure Q4_0`; qtf: `qtf convert` of that same Q4_0 GGUF (kept as q4:
       identical bytes, so the greedy text must agree)

    python3 bench/peers/peer_table.py --qtf build/qtf --llama-bin LLAMA/build/bin --work /tmp/peers \\
        --threads 1,4,16 --rounds 2 [--shapes stories15M,stories42M,stories110M] [--types f32,8,4]

Prints a Markdown table (tok/s medians over rounds, qtf/llama.cpp ratios) and writes --json with every run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

SHAPES = {  # llama2.c's stories models (its README), vocab 32000
    "stories15M": dict(d=288, hidden=768, L=6, H=6, seq=256),
    "stories42M": dict(d=512, hidden=1376, L=8, H=8, seq=1024),
    "stories110M": dict(d=768, hidden=2048, L=12, H=12, seq=1024),
}
PROMPT = "Once upon a time"
VOCAB = os.path.join(ROOT, "tests", "fixtures", "llama.cpp-vocab", "ggml-vocab-llama-spm.gguf")


def sh(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, env=env)
    if r.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode(errors="replace")


def measured(cmd, env=None):
    """Wall and CPU seconds and peak RSS (MiB) of one whole process (wait4); output to files, not pipes.
    The peak includes this process's own resident size at the fork, so this process stays small."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), err[-2000:]))
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024, "out": out}


def files(args, shape):
    w = lambda s: os.path.join(args.work, "%s-%s" % (shape, s))  # noqa: E731
    return {"ckpt": w("random.bin"),
            "f32": (w("f32.qtf"), w("f32.gguf")),
            "8": (w("q8.qtf"), w("q8_0.gguf")),
            "4": (w("q4.qtf"), w("q4_0.gguf"))}


def prepare(args, shape):
    f = files(args, shape)
    s = SHAPES[shape]
    lb = lambda n: os.path.join(args.llama_bin, n)  # noqa: E731
    if not os.path.exists(f["ckpt"]):  # in a child: this process stays small, as its forks' peak RSS counts it
        sh([sys.executable, "-c", "import sys; sys.path.insert(0, %r); from llama2c_peer import write_checkpoint; "
            "write_checkpoint(%r, %d, %d, %d, %d, 32000, %d, seed=0)" % (HERE, f["ckpt"], s["d"], s["L"], s["H"],
                                                                         s["hidden"], s["seq"])])
    steps = [
        (f["f32"][1], [lb("llama-convert-llama2c-to-ggml"), "--copy-vocab-from-model", args.vocab,
                       "--llama2c-model", f["ckpt"], "--llama2c-output-model", f["f32"][1]]),
        (f["8"][1], [lb("llama-quantize"), f["f32"][1], f["8"][1], "Q8_0"]),
        (f["4"][1], [lb("llama-quantize"), "--pure", f["f32"][1], f["4"][1], "Q4_0"]),
        (f["f32"][0], [args.qtf, "convert", f["f32"][1], f["f32"][0]]),
        (f["8"][0], [args.qtf, "quantize", f["f32"][0], f["8"][0], "--type", "q8"]),
        (f["4"][0], [args.qtf, "convert", f["4"][1], f["4"][0]]),
    ]
    for out, cmd in steps:
        if not os.path.exists(out):
            sh(cmd)
        print("%-40s %12d bytes" % (os.path.basename(out), os.path.getsize(out)), file=sys.stderr)


def pinned(t):
    return ["taskset", "-c", "0-%d" % (t - 1)] if t > 1 else ["taskset", "-c", "0"]


def bench_qtf(args, model, t):
    out = sh(pinned(t) + [args.qtf, "bench", "-m", model, "-p", str(args.pp), "-n", str(args.tg), "-r",
                          str(args.reps), "-t", str(t), "-o", "json"])
    return {r["test"]: r["avg_ts"] for r in json.loads(out)}


def bench_llama(args, model, t):
    out = sh(pinned(t) + [os.path.join(args.llama_bin, "llama-bench"), "-m", model, "-p", str(args.pp), "-n",
                          str(args.tg), "-r", str(args.reps), "-t", str(t), "-o", "json"],
             env=dict(os.environ, OMP_NUM_THREADS=str(t)))
    res = {}
    for r in json.loads(out):
        test = "pp%d" % r["n_prompt"] if r["n_gen"] == 0 else "tg%d" % r["n_gen"]
        res[test] = r["avg_ts"]
    return res


def greedy(args, shape, typ):
    """The text after the prompt from both programs on the GGUF (qtf converts it in memory), 32 tokens."""
    gguf = files(args, shape)[typ][1]
    q = sh([args.qtf, "run", "-m", gguf, "-p", PROMPT, "-n", "32", "--temp", "0", "-q"])
    ll = sh([os.path.join(args.llama_bin, "llama-simple"), "-m", gguf, "-n", "32", PROMPT])
    q, ll = q[q.find(PROMPT):].rstrip("\n"), ll[ll.find(PROMPT):].rstrip("\n")
    return q == ll, q, ll


def load_time(args, shape, t=1):
    f = files(args, shape)["f32"]
    cmds = {"qtf": [args.qtf, "run", "-m", f[0], "-p", PROMPT, "-n", "1", "--temp", "0", "-t", "1"],
            "llama.cpp": [os.path.join(args.llama_bin, "llama-simple"), "-m", f[1], "-n", "1", PROMPT]}
    for c in cmds.values():  # page cache warm
        measured(c)
    return {k: measured(pinned(t) + c, env=dict(os.environ, OMP_NUM_THREADS="1")) for k, c in cmds.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qtf", required=True)
    ap.add_argument("--llama-bin", required=True, help="folder with llama-bench, llama-quantize, llama-simple, "
                                                      "llama-convert-llama2c-to-ggml")
    ap.add_argument("--work", required=True)
    ap.add_argument("--vocab", default=VOCAB)
    ap.add_argument("--shapes", default="stories15M,stories42M,stories110M")
    ap.add_argument("--types", default="f32,8,4")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="repetitions inside each bench run")
    ap.add_argument("--pp", type=int, default=128)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    shapes, types = args.shapes.split(","), args.types.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    for s in shapes:
        prepare(args, s)
    runs, text, loads = [], {}, {}
    for s in shapes:
        for typ in ("f32", "4"):
            if typ in types:
                eq, q, ll = greedy(args, s, typ)
                text["%s %s" % (s, typ)] = {"equal": eq, "qtf": q, "llama.cpp": ll}
                print("greedy %s %s: %s" % (s, typ, "equal" if eq else "DIFFERENT\n  qtf:   %r\n  llama: %r" % (q, ll)),
                      file=sys.stderr)
        loads[s] = load_time(args, s)
    for rnd in range(args.rounds):  # interleaved: every case once per round
        for t in threads:
            for s in shapes:
                for typ in types:
                    qm, lm = files(args, s)[typ]
                    for prog, fn, m in (("qtf", bench_qtf, qm), ("llama.cpp", bench_llama, lm)):
                        r = fn(args, m, t)
                        runs.append({"round": rnd, "threads": t, "shape": s, "type": typ, "program": prog, **r})
                        print("round %d t=%d %s %s %-9s %s" % (rnd + 1, t, s, typ, prog, r), file=sys.stderr)
    pp, tg = "pp%d" % args.pp, "tg%d" % args.tg

    def med(t, s, typ, prog, test):
        v = [r[test] for r in runs if (r["threads"], r["shape"], r["type"], r["program"]) == (t, s, typ, prog)]
        return statistics.median(v) if v else float("nan")

    print("| shape | threads | type | qtf %s | llama.cpp %s | ratio | qtf %s | llama.cpp %s | ratio |" % (pp, pp, tg, tg))
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for s in shapes:
        for t in threads:
            for typ in types:
                a, b = med(t, s, typ, "qtf", pp), med(t, s, typ, "llama.cpp", pp)
                c, d = med(t, s, typ, "qtf", tg), med(t, s, typ, "llama.cpp", tg)
                print("| %s | %d | %s | %.1f | %.1f | %s%.2f%s | %.1f | %.1f | %s%.2f%s |" % (
                    s, t, typ, a, b, "**" if a < b else "", a / b, "**" if a < b else "",
                    c, d, "**" if c < d else "", c / d, "**" if c < d else ""))
    print("\n(bold: qtf slower)\n")
    print("| shape | program | time to first token, wall s | CPU s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for s, l in loads.items():
        for prog, m in l.items():
            print("| %s | %s | %.3f | %.3f | %.1f |" % (s, prog, m["wall_s"], m["cpu_s"], m["rss_mib"]))
    print()
    for k, v in text.items():
        print("greedy text, %s: %s" % (k, "equal" if v["equal"] else "different"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "text": text,
                       "load": {s: {p: {k: v for k, v in m.items() if k != "out"} for p, m in l.items()}
                                for s, l in loads.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
