"""Decode speed of the PyTorch reference on one CPU core, batch 1: the baseline the engine is compared to.

The reference (model.py) is a training model without a KV cache, so each new token runs the forward
pass over the whole prefix, as a user of the reference would. Greedy, float32, torch.no_grad().

    /usr/bin/python3 tools/train/bench_reference.py models/shakespeare-qtf.qtf --prompt "ROMEO:" -n 64
"""
import argparse
import json
import subprocess
import sys
import time

import torch

from export import load_qtf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("-n", type=int, default=64, help="tokens to generate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engine", help="path of the qtf binary: also check that its greedy text is identical")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load_qtf(args.model)
    byte_level = meta.get("tokenizer.type") == "byte"  # ids are the UTF-8 bytes (docs/qllm.md)
    vocab = meta["tokenizer.tokens"]
    index = {t: i for i, t in enumerate(vocab)}
    ids = list(args.prompt.encode("utf-8")) if byte_level else [index[c] for c in args.prompt if c in index]
    T = model.cfg.context - getattr(model.cfg, "memory_tokens", 0)  # memory slots take cache room
    with torch.no_grad():
        model(torch.tensor([ids]))  # warm-up
        start = time.perf_counter()
        for _ in range(args.n):
            logits, _ = model(torch.tensor([ids[-T:]]))
            ids.append(int(logits[0, -1].argmax()))
        elapsed = time.perf_counter() - start
    text = bytes(ids).decode("utf-8", "backslashreplace") if byte_level else "".join(vocab[i] for i in ids)
    print(json.dumps({"model": args.model, "tokens": args.n, "seconds": round(elapsed, 4),
                      "tokens_per_s": round(args.n / elapsed, 2), "threads": args.threads,
                      "torch": torch.__version__, "text": text}))
    if args.engine:
        out = subprocess.run([args.engine, "run", "-m", args.model, "-p", args.prompt, "-n", str(args.n),
                              "--temp", "0", "-q"], capture_output=True, check=True).stdout
        engine_text = out[:-1].decode("utf-8", "backslashreplace")  # qtf run ends the text with a newline of its own
        if engine_text != text:
            print("greedy text differs:\n reference %r\n engine    %r" % (text, engine_text), file=sys.stderr)
            sys.exit(1)
        print("engine greedy text is identical")


if __name__ == "__main__":
    main()
