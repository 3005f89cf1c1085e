"""karpathy/llama2.c's run.c at the scale models' shape, on random weights. This script does not fetch
or build run.c: pass the path of a `run` binary you built yourself, e.g.
    gcc -Ofast -march=native -o run run.c -lm            (one thread)
    gcc -Ofast -march=native -fopenmp -o runomp run.c -lm (OpenMP; OMP_NUM_THREADS=N)
It writes a random llama2.c checkpoint (legacy format: 7-int header, then the weights) whose SwiGLU hidden
size is 2/3 of d_ff (three d x hidden matrices = the FLOPs of the GELU FFN's two d x d_ff), a 256-token
byte tokenizer, runs `run -t 0 -n N -i <N letters>` R times (each step one token's forward pass, as in
generation) and prints the mean of run.c's own "achieved tok/s".

    python3 bench/peers/llama2c_peer.py --run ./run --d 768 --layers 12 --heads 12 --d_ff 3072 -n 256
"""
import argparse
import json
import os
import re
import struct
import subprocess
import tempfile

import numpy as np


def write_checkpoint(path, d, L, H, hidden, vocab, seq, seed=0):
    rng = np.random.default_rng(seed)
    hd = d // H

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    with open(path, "wb") as f:
        f.write(struct.pack("7i", d, hidden, L, H, H, vocab, seq))  # vocab > 0: classifier = embedding
        parts = [w(vocab, d), np.ones((L, d), np.float32), w(L, d, d), w(L, d, d), w(L, d, d), w(L, d, d),
                 np.ones((L, d), np.float32), w(L, hidden, d), w(L, d, hidden), w(L, hidden, d),
                 np.ones(d, np.float32), np.zeros((seq, hd // 2), np.float32), np.zeros((seq, hd // 2), np.float32)]
        for p in parts:
            f.write(p.tobytes())


def write_tokenizer(path, vocab):
    with open(path, "wb") as f:
        f.write(struct.pack("i", 4))  # longest token: "<xx>"
        for i in range(vocab):
            b = bytes([i]) if 32 <= i < 127 else b"<%02x>" % i
            f.write(struct.pack("fi", 0.0, len(b)) + b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a run.c binary you built")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d_ff", type=int, default=3072, help="the GELU FFN's width; SwiGLU hidden = 2/3 of it")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("-n", type=int, default=256, help="steps (run.c -n)")
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    hidden = 2 * args.d_ff // 3
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, tok = os.path.join(tmp, "model.bin"), os.path.join(tmp, "tok.bin")
        write_checkpoint(ckpt, args.d, args.layers, args.heads, hidden, args.vocab, args.ctx)
        write_tokenizer(tok, args.vocab)
        # A prompt as long as the run: every step is one forward pass of one token (as in generation),
        # and a random model cannot end the run early by sampling BOS.
        prompt = ("abcdefghij" * (args.n // 10 + 1))[:args.n]
        rates = []
        for _ in range(args.r):
            p = subprocess.run([args.run, ckpt, "-z", tok, "-t", "0", "-n", str(args.n), "-i", prompt], capture_output=True,
                               text=True, errors="replace")
            m = re.search(r"achieved tok/s: ([0-9.]+)", p.stderr)
            if not m:
                raise SystemExit("no tok/s from %s: %s" % (args.run, p.stderr[-500:]))
            rates.append(float(m.group(1)))
    print(json.dumps({"peer": "llama2.c run.c", "label": args.label, "d": args.d, "layers": args.layers,
                      "swiglu_hidden": hidden, "omp_threads": os.environ.get("OMP_NUM_THREADS", ""),
                      "steps": args.n, "tok_s": sum(rates) / len(rates), "samples": rates}))


if __name__ == "__main__":
    main()
