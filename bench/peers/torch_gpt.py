"""PyTorch as a user would run it: the dense scale models' shape (GPT-2 style block: LayerNorm, learned
positions, GELU FFN, tied head) in eager mode, random weights, no_grad, KV cache, batch 1, one thread.
Prints prompt (pp) and generation (tg) tokens per second like `qtf bench -p N -n M`.

    python3 bench/peers/torch_gpt.py --d 768 --layers 12 --heads 12 --d_ff 3072 -p 64 -n 128
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def attend(q, k, v, causal):
    if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    w = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        w = w.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return w.softmax(-1) @ v


class Block(nn.Module):
    def __init__(self, d, H, d_ff):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up, self.down = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x, K, V, pos):  # x [1, T, d]; K, V [1, H, n_ctx, hd] caches
        T, d = x.shape[1], x.shape[2]
        hd = d // self.H
        a = self.ln1(x)
        heads = lambda t: t.view(1, T, self.H, hd).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q(a)), heads(self.k(a)), heads(self.v(a))
        K[:, :, pos:pos + T] = k
        V[:, :, pos:pos + T] = v
        att = attend(q, K[:, :, :pos + T], V[:, :, :pos + T], causal=(T > 1 and pos == 0))
        x = x + self.o(att.transpose(1, 2).reshape(1, T, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, d, L, H, d_ff, n_ctx):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(Block(d, H, d_ff) for _ in range(L))
        self.lnf = nn.LayerNorm(d)
        self.H, self.n_ctx = H, n_ctx

    def new_cache(self):
        d = self.tok.weight.shape[1]
        shape = (1, self.H, self.n_ctx, d // self.H)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    def forward(self, ids, cache, pos):  # ids [1, T]: logits of the last position
        x = self.tok(ids) + self.pos(torch.arange(pos, pos + ids.shape[1]))[None]
        for blk, (K, V) in zip(self.blocks, cache):
            x = blk(x, K, V, pos)
        return self.lnf(x[:, -1]) @ self.tok.weight.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d_ff", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("-p", type=int, default=64)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=3, help="timed repetitions (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(args.vocab, args.d, args.layers, args.heads, args.d_ff, args.ctx).eval()
    prompt = torch.randint(0, args.vocab, (1, args.p))
    out = {"torch": torch.__version__, "threads": args.threads, "d": args.d, "layers": args.layers,
           "params": sum(p.numel() for p in model.parameters())}
    with torch.no_grad():
        pp, tg = [], []
        for rep in range(args.r + 1):
            cache = model.new_cache()
            t0 = time.perf_counter()
            logits = model(prompt, cache, 0)  # the prompt in one forward (the causal block)
            t1 = time.perf_counter()
            tok = logits.argmax(-1, keepdim=True)
            t2 = time.perf_counter()
            for i in range(args.n):  # generation with the KV cache, one token at a time
                tok = model(tok, cache, args.p + i).argmax(-1, keepdim=True)
            t3 = time.perf_counter()
            if rep:
                pp.append(args.p / (t1 - t0))
                tg.append(args.n / (t3 - t2))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    out.update({"pp%d" % args.p: mean(pp), "tg%d" % args.n: mean(tg)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
