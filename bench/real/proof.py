#!/usr/bin/env python3
"""Proof on real models (docs/llama.md, "Real models: proof"): qtf against llama2.c's run.c and llama.cpp
on models that someone else trained, and load time against llama.cpp. Every figure of that section comes
from one of these subcommands; each prints a Markdown table and writes the raw numbers as JSON.

This script builds nothing from outside projects. It takes programs you built yourself:
  --qtf PATH        qtf's CLI (build/qtf)
  --run PATH        llama2.c's run.c built as `gcc -O3 -march=native -o run run.c -lm`
  --llama-cpp DIR   a llama.cpp checkout whose build/bin holds llama-simple, llama-completion and
                    llama-convert-llama2c-to-ggml (and its convert_hf_to_gguf.py + gguf-py for `prepare`)
and the real models of ../shared/data/real (--real; README there gives their provenance).

  prepare  make the inputs under --work: GGUF files with llama.cpp's own converters (stories260K and the
           random shapes with llama-convert-llama2c-to-ggml, the vocabulary copied from the llama2.c
           tokenizer.bin; TinyStories-656K with convert_hf_to_gguf.py), random llama2.c checkpoints of
           the stories15M and stories110M shapes (vocab 32000, the Llama 2 tokenizer), and the .qtf files
           (`qtf convert`)
  text     greedy text (and run.c's seeded sample) of stories260K + tok512 in run.c, qtf on the llama2.c
           file, qtf on the GGUF, llama.cpp on the GGUF; TinyStories-656K in qtf (HF dir, GGUF) and
           llama.cpp; byte-for-byte comparisons
  load     time to first token (whole process, one generated token) and peak RSS, interleaved rounds
  import   the same for qtf reading the GGUF and the llama2.c checkpoint directly (converted in memory),
           and for `qtf convert` of the GGUF; --qtf-base PATH adds the same rows for a second qtf build
           (before/after a change), interleaved
  loss     see bench/real/loss.py (qtf eval next to a reference forward pass on the same ids)

    python3 bench/real/proof.py prepare --qtf build/qtf --llama-cpp ../ext/llama.cpp --work /tmp/proof
    python3 bench/real/proof.py text --qtf build/qtf --run ./run --llama-cpp ../ext/llama.cpp --work /tmp/proof
    python3 bench/real/proof.py load --qtf build/qtf --llama-cpp ../ext/llama.cpp --work /tmp/proof -r 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))

from llama2c_peer import write_checkpoint  # noqa: E402

# The random-weight shapes of karpathy's stories15M and stories110M (llama2.c README), vocab 32000.
SHAPES = {
    "stories15M": dict(d=288, hidden=768, L=6, H=6, seq=256),
    "stories110M": dict(d=768, hidden=2048, L=12, H=12, seq=1024),
}
PROMPT = "Once upon a time"


def real_paths(real):
    return {
        "s260_bin": os.path.join(real, "stories260K", "stories260K.bin"),
        "s260_tok": os.path.join(real, "stories260K", "tok512.bin"),
        "ts656_dir": os.path.join(real, "TinyStories-656K"),
        "baby_bin": os.path.join(real, "babyllama", "model5000.bin"),
        "baby_model": os.path.join(real, "babyllama", "tok105.model"),
        "llama2_tok": os.path.join(real, "llama2-tokenizer", "tokenizer.bin"),
        "valid": os.path.join(real, "tinystories-valid-1-500.txt"),
    }


def llama_bin(args, name):
    p = os.path.join(args.llama_cpp, "build", "bin", name)
    if not os.path.exists(p):
        sys.exit("missing %s (build llama.cpp's %s target)" % (p, name))
    return p


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr.decode(errors="replace")[-2000:]))
    return r


def work(args, name):
    return os.path.join(args.work, name)


# ---------------------------------------------------------------------------------------------- prepare
def with_embedding(hf_dir, out_dir):
    """A copy of an HF directory whose model.safetensors holds only lm_head.weight (tied embeddings, as
    TinyStories-656K's) with the same matrix also stored as model.embed_tokens.weight: llama.cpp's
    converter maps lm_head to output.weight only, and llama.cpp then refuses the GGUF ("tensor
    'token_embd.weight' not found"). Returns False when the directory needs no copy."""
    import shutil
    import struct as st
    with open(os.path.join(hf_dir, "model.safetensors"), "rb") as f:
        data = f.read()
    n = st.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    if "model.embed_tokens.weight" in header or "lm_head.weight" not in header:
        return False
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(hf_dir):
        if name != "model.safetensors":
            shutil.copyfile(os.path.join(hf_dir, name), os.path.join(out_dir, name))
    body = data[8 + n:]
    lm = header["lm_head.weight"]
    s, e = lm["data_offsets"]
    header["model.embed_tokens.weight"] = dict(lm, data_offsets=[len(body), len(body) + e - s])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(st.pack("<Q", len(raw)) + raw + body + body[s:e])
    return True


def prepare(args):
    P = real_paths(args.real)
    os.makedirs(args.work, exist_ok=True)
    conv = args.llama2c_converter or llama_bin(args, "llama-convert-llama2c-to-ggml")

    def to_gguf(ckpt, tok, out):
        if not os.path.exists(out):
            sh([conv, "--copy-vocab-from-model", tok, "--llama2c-model", ckpt, "--llama2c-output-model", out])
        print("gguf   ", out, os.path.getsize(out))

    to_gguf(P["s260_bin"], P["s260_tok"], work(args, "stories260K.gguf"))
    for name, s in SHAPES.items():
        ckpt = work(args, name + "-random.bin")
        if not os.path.exists(ckpt):
            write_checkpoint(ckpt, s["d"], s["L"], s["H"], s["hidden"], 32000, s["seq"], seed=0)
        print("random ", ckpt, os.path.getsize(ckpt))
        to_gguf(ckpt, P["llama2_tok"], work(args, name + "-random.gguf"))
    hf = work(args, "TinyStories-656K.gguf")
    if not os.path.exists(hf):
        src = work(args, "TinyStories-656K-embed")
        if not with_embedding(P["ts656_dir"], src):
            src = P["ts656_dir"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, "hf_stub"),
                                                          os.path.join(args.llama_cpp, "gguf-py")]))
        sh([args.python, os.path.join(HERE, "hf_stub", "run_convert_hf.py"),
            os.path.join(args.llama_cpp, "convert_hf_to_gguf.py"), src, "--outtype", "f32",
            "--outfile", hf], env=env)
    print("gguf   ", hf, os.path.getsize(hf))
    if args.qtf:  # .qtf files converted once (qtf convert)
        for src, tok, out in [(P["s260_bin"], P["s260_tok"], "stories260K.qtf"),
                              (work(args, "stories15M-random.bin"), P["llama2_tok"], "stories15M-random.qtf"),
                              (work(args, "stories110M-random.bin"), P["llama2_tok"], "stories110M-random.qtf"),
                              (P["ts656_dir"], None, "TinyStories-656K.qtf")]:
            out = work(args, out)
            if not os.path.exists(out):
                sh([args.qtf, "convert", src, out] + (["--tokenizer", tok] if tok else []))
            print("qtf    ", out, os.path.getsize(out))


# ------------------------------------------------------------------------------------------------- load
def run_measured(cmd, env=None):
    """Wall seconds, CPU seconds (user + sys) and peak RSS (KiB) of one whole process, from wait4. Output
    goes to files, not pipes: a pipe nobody drains would stall a chatty program."""
    import tempfile
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err[-2000:]))
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_kib": ru.ru_maxrss, "out": out, "err": err}


def load_commands(args, shape):
    """(label, command) pairs: each generates exactly one token after the prompt, one thread."""
    cmds = []
    q = ["-p", PROMPT, "-n", "1", "--temp", "0", "-t", "1"]
    if args.qtf:
        for ext in ("qtf", "gguf"):
            m = work(args, "%s-random.%s" % (shape, ext))
            if os.path.exists(m):
                cmds.append(("qtf (.%s)" % ext, [args.qtf, "run", "-m", m] + q))
    if args.llama_cpp:
        m = work(args, shape + "-random.gguf")
        cmds.append(("llama.cpp llama-simple", [llama_bin(args, "llama-simple"), "-m", m, "-n", "1", PROMPT]))
        if os.path.exists(os.path.join(args.llama_cpp, "build", "bin", "llama-completion")):
            cmds.append(("llama.cpp llama-completion", [llama_bin(args, "llama-completion"), "-m", m, "-n", "1",
                                                         "-t", "1", "--temp", "0", "-no-cnv", "--no-warmup",
                                                         "-p", PROMPT]))
    return cmds


def load(args):
    results = {}
    shapes = args.shapes.split(",")
    plan = {s: load_commands(args, s) for s in shapes}
    for s, cmds in plan.items():  # warm the page cache: every file read once before timing
        for _, c in cmds:
            run_measured(c)
    for rnd in range(args.repeat):
        for s in shapes:
            for label, c in plan[s]:
                m = run_measured(c, env=dict(os.environ, OMP_NUM_THREADS="1"))
                results.setdefault(s, {}).setdefault(label, []).append(m)
                print("round %d %-12s %-28s wall %.3f s cpu %.3f s rss %.1f MiB" %
                      (rnd + 1, s, label, m["wall_s"], m["cpu_s"], m["rss_kib"] / 1024), file=sys.stderr)
    print("| shape | program | wall s, median (min-max) | CPU s, median | peak RSS MiB | rounds |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for s in shapes:
        for label, ms in results[s].items():
            w = [m["wall_s"] for m in ms]
            c = [m["cpu_s"] for m in ms]
            r = [m["rss_kib"] / 1024 for m in ms]
            summary.setdefault(s, {})[label] = {"wall_s": w, "cpu_s": c, "rss_mib": r}
            print("| %s | %s | %.3f (%.3f-%.3f) | %.3f | %.1f | %d |" %
                  (s, label, statistics.median(w), min(w), max(w), statistics.median(c), max(r), len(ms)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


def import_rows(args):
    """qtf reading other formats directly: (label, command, output to remove) per qtf binary."""
    P = real_paths(args.real)
    rows = []
    q = ["-p", PROMPT, "-n", "1", "--temp", "0", "-t", "1"]
    for tag, qtf in [("", args.qtf)] + ([(" base", args.qtf_base)] if args.qtf_base else []):
        for s in args.shapes.split(","):
            g, b = work(args, s + "-random.gguf"), work(args, s + "-random.bin")
            out = work(args, s + "-import-%d.qtf" % len(rows))
            if os.path.exists(work(args, s + "-random.qtf")):  # the fast path, for comparison
                rows.append((s, "qtf%s run (.qtf)" % tag, [qtf, "run", "-m", work(args, s + "-random.qtf")] + q, None))
            rows.append((s, "qtf%s run (.gguf)" % tag, [qtf, "run", "-m", g] + q, None))
            rows.append((s, "qtf%s run (.bin + tokenizer.bin)" % tag,
                         [qtf, "run", "-m", b, "--tokenizer", P["llama2_tok"]] + q, None))
            rows.append((s, "qtf%s convert (.gguf -> .qtf)" % tag, [qtf, "convert", g, out], out))
    return rows


def import_(args):
    rows = import_rows(args)
    for _, _, c, out in rows:  # warm the page cache
        run_measured(c)
        if out:
            os.remove(out)
    results = {}
    for rnd in range(args.repeat):
        for s, label, c, out in rows:
            m = run_measured(c, env=dict(os.environ, OMP_NUM_THREADS="1"))
            if out:
                os.remove(out)
            results.setdefault((s, label), []).append(m)
            print("round %d %-12s %-36s wall %.3f s cpu %.3f s rss %.1f MiB" %
                  (rnd + 1, s, label, m["wall_s"], m["cpu_s"], m["rss_kib"] / 1024), file=sys.stderr)
    print("| shape | program | wall s, median (min-max) | CPU s, median (min-max) | peak RSS MiB | rounds |")
    print("|---|---|---|---|---|---|")
    for (s, label), ms in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        w = [m["wall_s"] for m in ms]
        c = [m["cpu_s"] for m in ms]
        r = [m["rss_kib"] / 1024 for m in ms]
        print("| %s | %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %.1f | %d |" %
              (s, label, statistics.median(w), min(w), max(w), statistics.median(c), min(c), max(c), max(r), len(ms)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"%s %s" % k: [{x: m[x] for x in ("wall_s", "cpu_s", "rss_kib")} for m in v]
                       for k, v in results.items()}, f, indent=1)


# ------------------------------------------------------------------------------------------------- text
def runc_steps_to_qtf_n(prompt_ids):
    """run.c's -n counts positions from BOS, prompt included, and prints one piece per position after
    the first; qtf's -n counts generated tokens. k prompt ids (BOS included) -> 256 - (k - 1) tokens."""
    return 256 - (prompt_ids - 1)


def strip_bos_echo(s, prompt=PROMPT):
    """llama-simple echoes the prompt's tokens with BOS spelled out ("<s>", "<|start_story|>") and the
    first word's SentencePiece space: the text from the prompt on."""
    i = s.find(prompt)
    return s[i:] if 0 <= i <= 40 else s


def chomp(s):
    """run.c, llama-simple and qtf each end their output with one newline of their own."""
    return s[:-1] if s.endswith("\n") else s


def first_difference(a, b):
    n = min(len(a), len(b))
    i = next((i for i in range(n) if a[i] != b[i]), n)
    if i == n and len(a) == len(b):
        return None
    return "byte %d: %r vs %r" % (i, a[i:i + 40], b[i:i + 40])


def try_out(cmd):
    """stdout, or None and the error's last line (a program that cannot run a case is a row, not a stop)."""
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        lines = r.stderr.decode(errors="replace").strip().splitlines()
        return None, lines[-1] if lines else "exit %d" % r.returncode
    return r.stdout.decode(errors="replace"), None


def qtf_ids(args, model_args, text_):
    """ids of text_ by `qtf tokenize` (prompt length for -n)."""
    r = sh([args.qtf, "tokenize", "-m"] + model_args + ["--ids", text_])
    return json.loads(r.stdout.decode())  # "[1, 2, 3]"


def text(args):
    P = real_paths(args.real)
    rows, outs = [], {}

    def record(case, program, cmd, out, ref=None, error=None):
        if out is None:
            rows.append({"case": case, "program": program, "cmd": " ".join(cmd), "bytes": 0, "equal": False,
                         "ref": ref and ref[1], "diff": "cannot run: " + error})
            return
        outs[(case, program)] = out
        with open(work(args, "text-%s-%s.txt" % ("".join(c if c.isalnum() else "_" for c in case),
                                                 "".join(c if c.isalnum() else "_" for c in program))), "w") as f:
            f.write(out)
        diff = first_difference(out.encode(), outs[ref].encode()) if ref else None
        rows.append({"case": case, "program": program, "cmd": " ".join(cmd), "bytes": len(out.encode()),
                     "equal": None if ref is None else diff is None, "ref": ref and ref[1], "diff": diff})

    s260 = [P["s260_bin"], "--tokenizer", P["s260_tok"]]
    # (a) stories260K + tok512: run.c, then qtf on the llama2.c file (in memory) and on its GGUF.
    if args.run:
        for case, rc_args, q_args in [
                ("260K greedy, no prompt", ["-t", "0"], ["-p", "", "-n", "256", "--temp", "0"]),
                ("260K greedy, \"%s\"" % PROMPT, ["-t", "0", "-i", PROMPT], None),
                ("260K seeded -t 1 -p 0.9 -s 133742", ["-t", "1.0", "-p", "0.9", "-s", "133742"],
                 ["-p", "", "-n", "256", "--temp", "1", "--top-p", "0.9", "--top-k", "0", "--min-p", "0",
                  "-s", "133742"])]:
            cmd = [args.run, P["s260_bin"], "-z", P["s260_tok"]] + rc_args
            out = chomp(sh(cmd).stdout.decode())
            record(case, "run.c", cmd, out)
            if q_args is None:
                k = len(qtf_ids(args, [work(args, "stories260K.gguf")], PROMPT)) if args.qtf else 5
                q_args = ["-p", PROMPT, "-n", str(runc_steps_to_qtf_n(k)), "--temp", "0"]
            if args.qtf:
                runs = [("qtf (llama2.c .bin)", s260, [])]  # (the GGUF's context is 128: below)
                if "seeded" in case:  # run.c's generator (xorshift*) instead of qtf's default splitmix64
                    runs.append(("qtf --rng runc (llama2.c .bin)", s260, ["--rng", "runc"]))
                for label, m, extra in runs:
                    cmd = [args.qtf, "run", "-m"] + m + q_args + extra + ["-q"]
                    o, e = try_out(cmd)
                    record(case, label, cmd, o and chomp(o), (case, "run.c"), e)
    # (b) GGUF from llama.cpp's converters: llama.cpp and qtf read the same file.
    if args.llama_cpp:
        # llama-convert-llama2c-to-ggml writes context_length 128 whatever the checkpoint's seq_len (512):
        # qtf keeps to the file's context and llama-simple does not, so that case stops within 128.
        for case, gguf, alt, n in [("260K GGUF greedy", work(args, "stories260K.gguf"), s260, 120),
                                   ("656K GGUF greedy", work(args, "TinyStories-656K.gguf"), [P["ts656_dir"]],
                                    args.n_text)]:
            cmd = [llama_bin(args, "llama-simple"), "-m", gguf, "-n", str(n), PROMPT]
            record(case, "llama.cpp", cmd, chomp(strip_bos_echo(sh(cmd).stdout.decode())))
            if args.qtf:
                for label, m in [("qtf (.gguf)", [gguf]), ("qtf (original)", alt)]:
                    cmd = [args.qtf, "run", "-m"] + m + ["-p", PROMPT, "-n", str(n), "--temp", "0", "-q"]
                    o, e = try_out(cmd)
                    record(case, label, cmd, o and chomp(o), (case, "llama.cpp"), e)
    print("| case | program | bytes | equal to | first difference |")
    print("|---|---|---|---|---|")
    for r in rows:
        eq = "-" if r["equal"] is None else ("%s: **equal**" % r["ref"] if r["equal"] else "%s: differs" % r["ref"])
        print("| %s | %s | %d | %s | %s |" % (r["case"], r["program"], r["bytes"], eq, r["diff"] or ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["prepare", "text", "load", "import"])
    ap.add_argument("--qtf", help="qtf CLI (build/qtf)")
    ap.add_argument("--qtf-base", help="import: a second qtf CLI timed the same way (before a change)")
    ap.add_argument("--run", help="llama2.c run.c binary")
    ap.add_argument("--llama-cpp", help="llama.cpp checkout with build/bin")
    ap.add_argument("--llama2c-converter", help="llama-convert-llama2c-to-ggml (default: in --llama-cpp's build/bin)")
    ap.add_argument("--real", default=os.environ.get("QTF_REAL_DATA", os.path.join(HERE, "..", "..", "..",
                                                                                    "shared", "data", "real")))
    ap.add_argument("--work", default="/tmp/qtf-proof")
    ap.add_argument("--python", default=sys.executable, help="python with numpy and torch for convert_hf_to_gguf.py")
    ap.add_argument("--shapes", default="stories15M,stories110M")
    ap.add_argument("-r", "--repeat", type=int, default=5)
    ap.add_argument("--n-text", type=int, default=200, help="text: tokens generated in the TinyStories-656K GGUF case")
    ap.add_argument("--json")
    args = ap.parse_args()
    {"prepare": prepare, "load": load, "text": text, "import": import_}[args.cmd](args)


if __name__ == "__main__":
    main()
