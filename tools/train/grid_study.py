"""Would a non-linear 4-bit grid pay? (issue 27: stories260K's half-q8 file misses its goal by 0.026 nats.)
Every matrix of a model rounded at once (no healing), KL(original || rounded) per position and greedy
agreement on calibration windows (budget.Session's, never the held-out stories), for the engine's types
(q4, q4s, q3s, q8 through the writer) against the same blocks on IQ4_NL's non-linear grid (llama.cpp's
kvalues_iq4nl: 16 int8 levels, denser near zero) with an f16 scale per block (nl4), or under q4s's 6-bit
sub-scales (nl4s), and a symmetric 8-level grid for 3 bits (nl3s). Each block's scale is searched for the
least squared error (24 trial scales at either end of the grid, each refit by least squares).

    /usr/bin/python3 tools/train/grid_study.py models/stories260k.qtf [--windows 16]

--heal SECONDS KIND: the same, then every matrix (the tied embedding included) at KIND (q4s: the uniform
grid under 6-bit sub-scales, scales as the writer searches them; nl4s: IQ4_NL's grid under them) healed by
budget.heal's distillation on stories 1-300 and 32 samples of the original (set-aside KL on the last 10% of
those stories), then the loss on held-out stories 301-500 in PyTorch (windows of 256 tokens, every
next-token prediction scored; not qtf eval's protocol, so compare rows of one run, not other tables):

    /usr/bin/python3 tools/train/grid_study.py models/stories260k.qtf --heal 300 nl4s

--entropy: would entropy coding of the stored codes pay? Per kind (q4s, q3s, every matrix and the tied
embedding rounded as `qtf quantize` would), the codes' bytes as stored, at their empirical entropy per
matrix, and with a Huffman code per matrix (a table of 16 code lengths each, not counted):

    /usr/bin/python3 tools/train/grid_study.py models/stories260k.qtf --entropy

--equalize: would AWQ-style equalisation pay? Each layer's linears get per-input-channel scales s folded
into what feeds them, exactly (q, k, v: columns times s, ln1's weight over s; gate, up with ln2; o's columns
times s and v's rows over s, tied across the query heads of a kv head; down's columns times s and up's rows
over s); s = rms(x)^a over the calibration inputs, a in 0, 0.1 .. 1 chosen per group by the inputs-weighted
squared error of q3s's rounding (tr(dW H dW^T)). Every matrix and the tied embedding at q3s, rtn and gptq,
KL on the calibration windows, before and after:

    /usr/bin/python3 tools/train/grid_study.py models/stories260k.qtf --equalize

--sub16 BUDGETS: would a 3-bit kind with 16-value sub-blocks pay (GGUF Q3_K's layout, with one f16 scale a
row so it expands exactly to q8 rows: 3 + 6/16 bits and 2 bytes a row)? Each matrix's KL alone with that
rounding (rtn, the scale searched per sub-block) scaled by its q3s gptq/rtn ratio, offered to the knapsack
beside the committed sensitivities (models/logs/budget-gptq/sens-*.json, read from a copy): the predicted KL
at each budget with and without it:

    /usr/bin/python3 tools/train/grid_study.py models/stories260k.qtf --sub16 146304,150400,154496
"""
import argparse
import copy
import heapq
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import budget
import budget_frontier
import llama
import qtf_format as qf

IQ4_NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)
GRID3 = np.array([-127, -84, -52, -25, 0, 25, 52, 84], np.float32)


def grid_codes(v, d, grid):
    """Nearest grid level of v / d per value: (codes [B, 32], squared error [B])."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(d[:, None] != 0, v / d[:, None], 0)
    c = np.searchsorted((grid[1:] + grid[:-1]) / 2, x)
    return c, ((v - d[:, None] * grid[c]) ** 2).sum(1)


def grid_blocks(W, grid, sub_scales=False, trials=24, scales_only=False):
    """W [M, N] rounded to blocks of 32 on `grid` times an f16 scale (q4s's sub-scales: sub_scales); scales_only:
    the block scales [M, nb] instead."""
    v, _ = qf._blocks_of(W)  # the padding is zeros, which every scale rounds with no error
    mx = v[np.arange(len(v)), np.abs(v).argmax(1)]
    best_d, best = np.zeros(len(v), np.float32), np.full(len(v), np.inf)
    for t in np.linspace(-1, 1, trials):
        for end in (grid[0], grid[-1]):
            d = (mx / (end + t * 4)).astype(np.float16).astype(np.float32)
            c, e = grid_codes(v, d, grid)
            g = grid[c]
            d2 = ((v * g).sum(1) / np.maximum((g * g).sum(1), 1e-30)).astype(np.float16).astype(np.float32)
            _, e2 = grid_codes(v, d2, grid)
            for dd, ee in ((d, e), (d2, e2)):
                win = ee < best
                best, best_d = np.where(win, ee, best), np.where(win, dd, best_d)
    if sub_scales:
        _, _, best_d = qf.super_scales(best_d)
    if scales_only:
        return best_d.reshape(W.shape[0], -1)
    c, _ = grid_codes(v, best_d, grid)
    return (best_d[:, None] * grid[c]).reshape(W.shape[0], -1)[:, :W.shape[1]]


class GridSTE(nn.Module):
    """Straight-through rounding of a weight to blocks of 32 on a grid times fixed block scales d [M, nb]."""

    def __init__(self, d, grid):
        super().__init__()
        self.register_buffer("d", torch.as_tensor(d, dtype=torch.float32))
        self.register_buffer("grid", torch.as_tensor(grid, dtype=torch.float32))
        self.register_buffer("mid", (self.grid[1:] + self.grid[:-1]) / 2)

    def forward(self, w):
        M, N = w.shape
        nb = self.d.shape[1]
        with torch.no_grad():
            d = self.d[:, :, None]
            x = F.pad(w, (0, nb * 32 - N)).view(M, nb, 32) / torch.where(d == 0, torch.ones_like(d), d)
            q = (self.grid[torch.bucketize(x, self.mid)] * d).view(M, nb * 32)[:, :N]
        return w + (q - w).detach()


def heal_kind(s, mats, kind, seconds, text):
    grid = np.arange(-8, 8, dtype=np.float32) if kind == "q4s" else IQ4_NL
    student = llama.Llama(s.model.cfg)
    student.load_state_dict(s.model.state_dict())
    student.float()
    for m in mats:
        if kind == "q4s":
            d = budget.block_grid(m, "q4s", "rtn")[0]  # the writer's searched scales on q4s's sub-scale grid
        else:
            d = grid_blocks(m.W, grid, True, scales_only=True)
        parametrize.register_parametrization(budget.linear_module(student, m.name), "weight", GridSTE(d, grid))
    data = s.train_x if s.samples_x is None else torch.cat([s.train_x, s.samples_x])
    h = budget.heal(student, s.model, data, s.val_x, s.val_lp, seconds, 10 ** 9, log=lambda *_: None)
    held = budget_frontier.heldout_file(text, "301-500", "/dev/null")
    ids = budget.encode_stories(s.qtf, s.qtf_path, s.meta, held, s.workdir, s.binding, drop_unknown=True,
                                log=lambda *_: None)
    hx = budget.windows(ids, 256)
    base, got = budget.text_loss(s.model, hx), budget.text_loss(student, hx)
    print("%s healed %d s (%d steps): set-aside KL %.4f -> %.4f; held-out loss %.4f vs f32 %.4f (%+.4f) on %d windows" % (
        kind, seconds, h["steps"], h["val_kl_before"], h["val_kl_after"], got, base, got - base, len(hx)), flush=True)


def entropy_bits(codes):
    """(empirical entropy, Huffman code) bits of a code sequence, coded on its own."""
    _, n = np.unique(codes, return_counts=True)
    p = n / n.sum()
    h = float(-(p * np.log2(p)).sum()) * codes.size
    if len(n) == 1:
        return h, codes.size
    heap = [(int(c), i, [i]) for i, c in enumerate(n)]
    heapq.heapify(heap)
    lengths = np.zeros(len(n), np.int64)
    while len(heap) > 1:  # each merge adds a bit to every symbol below it
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        lengths[a[2] + b[2]] += 1
        heapq.heappush(heap, (a[0] + b[0], min(a[1], b[1]), a[2] + b[2]))
    return h, int((lengths * n).sum())


def code_entropy(model_path):
    model, _ = llama.load_qtf(model_path)
    mats = budget.matrices(model, "quant")  # the matrices the chooser stores, named as in the file
    for kind, bits in (("q4s", 4), ("q3s", 3)):
        n = h = huff = 0
        for m in mats:
            raw = qf.encode_super(m.W, kind)
            _, (_, code, _) = qf.decode_super(raw, m.W.shape[0], m.W.shape[1], kind, m.name)
            c = code[:, :m.W.shape[1]].reshape(-1)
            e, hb = entropy_bits(c)
            n, h, huff = n + c.size, h + e, huff + hb
        print("%s: %d weights; codes as stored %.0f bytes (%d bits each), at their entropy %.0f (%.3f bits), "
              "Huffman per matrix %.0f (%.3f bits): %.1f KiB less" % (kind, n, n * bits / 8, bits, h / 8, h / n,
                                                                       huff / 8, huff / n, (n * bits - huff) / 8192))


def equalize(model, H, kind="q3s", alphas=np.linspace(0, 1, 11)):
    """Fold per-input-channel scales into each layer (see --equalize) in place; H: budget.input_moments'.
    -> lines saying each group's exponent and inputs-weighted rounding error before and after."""
    cfg = model.cfg
    KV, g, hd = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads, cfg.head_dim

    def err(W, Hm, s):
        D = (budget.roundtrip(W * s[None, :], kind) / s[None, :] - W).astype(np.float64)
        return float(np.einsum("ij,jk,ik->", D, Hm, D))

    def best(Ws, Hm, tie=None):
        r = np.sqrt(np.maximum(np.diag(Hm), 1e-30))
        out = None
        for a in alphas:
            s = r ** a if tie is None else tie(r ** a)
            s = s / np.exp(np.log(s).mean())
            e = sum(err(W, Hm, s) for W in Ws)
            out = out if out is not None and out[0] <= e else (e, a, s)
        return out, sum(err(W, Hm, np.ones(len(r))) for W in Ws)

    def heads(s):  # o's input channels of one kv head's query heads share a scale (v's row)
        t = np.exp(np.log(s).reshape(KV, g, hd).mean(1))
        return np.repeat(t[:, None, :], g, 1).reshape(-1)

    lines = []
    with torch.no_grad():
        for l, b in enumerate(model.blocks):
            groups = (("qkv", [b.q, b.k, b.v], "attn.q", None), ("gate/up", [b.gate, b.up], "ffn.gate", None),
                      ("o", [b.o], "attn.o", heads), ("down", [b.down], "ffn.down", None))
            for label, lins, key, tie in groups:
                (e, a, s), e0 = best([x.weight.numpy() for x in lins], H["blk.%d.%s" % (l, key)], tie)
                st = torch.from_numpy(s.astype(np.float32))
                for x in lins:
                    x.weight.mul_(st[None, :])
                if label == "qkv":
                    b.ln1.weight.div_(st)
                elif label == "gate/up":
                    b.ln2.weight.div_(st)
                elif label == "o":
                    b.v.weight.div_(st.reshape(KV, g, hd)[:, 0, :].reshape(-1)[:, None])
                else:
                    b.up.weight.div_(st[:, None])
                lines.append("layer %d %-7s a = %.1f: weighted error %.4g -> %.4g" % (l, label, a, e0, e))
    return lines


def uniform_kl(s, x, t_lp, kind, rounding):
    mats = budget.matrices(s.model, "quant", rounding, s.H, [kind])
    choice = [next(j for j, o in enumerate(m.options) if o["dtype"] == kind) for m in mats]
    return budget.kl_to(budget.make_student(s.model, mats, choice), x, t_lp)


def equalize_study(s, x, t_lp, kind="q3s"):
    for rounding in ("rtn", "gptq"):
        print("before: every matrix %s %s: KL %.4f, greedy agreement %.3f" % ((kind, rounding) + uniform_kl(s, x, t_lp, kind, rounding)), flush=True)
    for line in equalize(s.model, s.H, kind):
        print(line)
    s.H = budget.input_moments(s.model, s.train_x[:128])  # GPTQ's inputs are the equalised model's
    print("equalised model against the original: KL %.2g" % budget.kl_to(s.model, x, t_lp)[0])
    for rounding in ("rtn", "gptq"):
        print("after: every matrix %s %s: KL %.4f, greedy agreement %.3f" % ((kind, rounding) + uniform_kl(s, x, t_lp, kind, rounding)), flush=True)


def sub16_values(W, lo=-4, hi=3, bs=16, trials=12):
    """W rounded to 3-bit codes in sub-blocks of bs along each row, each sub-block's scale searched (trials
    scales max / (lo + t), t in [-1, 1]) then stored as a 6-bit multiple of one f16 scale a row."""
    M, N = W.shape
    nb = (N + bs - 1) // bs
    v = np.zeros((M, nb * bs), np.float32)
    v[:, :N] = W
    v = v.reshape(-1, bs)
    mx = v[np.arange(len(v)), np.abs(v).argmax(1)]

    def codes(d):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.clip(np.rint(np.where(d[:, None] != 0, v / d[:, None], 0)), lo, hi)
    best_d, best = np.zeros(len(v), np.float32), np.full(len(v), np.inf)
    for t in np.linspace(-1, 1, trials):
        d = (mx / (lo + t)).astype(np.float32)
        e = ((v - d[:, None] * codes(d)) ** 2).sum(1)
        best_d, best = np.where(e < best, d, best_d), np.minimum(e, best)
    rows = best_d.reshape(M, nb)
    D = (np.abs(rows).max(1) / 31).astype(np.float16).astype(np.float32)
    sub = np.clip(np.rint(np.where(D[:, None] > 0, rows / np.where(D > 0, D, 1)[:, None], 0)), -31, 31)
    d = (sub * D[:, None]).reshape(-1)
    return (d[:, None] * codes(d)).reshape(M, -1)[:, :N]


def sub16_bytes(M, N, bs=16):
    nb = (N + bs - 1) // bs
    return budget.aligned(M * nb * bs * 3 // 8 + (M * nb * 6 + 7) // 8 + 2 * M)


def sub16_study(a, budgets):
    name = os.path.basename(a.model).replace(".qtf", "").replace("-", "")
    cache = os.path.join(tempfile.mkdtemp(prefix="sub16-"), "sens.json")  # a copy: Session writes into its cache
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "models", "logs", "budget-gptq",
                             "sens-%s.json" % name), cache)
    s = budget.Session(a.model, a.text, stories="1-300", rounding="best", samples=0, calib_windows=6,
                       sens_cache=cache)
    mats, fixed = s.family("quant")
    extra = {}
    for m in mats:
        if m.role != "dense" and m.name != "tok_emb":
            continue
        st = copy.deepcopy(s.model)
        with torch.no_grad():
            budget.weight_param(st, m.name).copy_(torch.from_numpy(sub16_values(m.W).astype(np.float32)))
        kl = budget.kl_to(st, s.calib_x, s.calib_lp)[0]
        o = {(q["dtype"], q.get("rounding")): q for q in m.options}
        ratio = o["q3s", "gptq"]["loss"] / max(o["q3s", "rtn"]["loss"], 1e-9)
        extra[m.name] = (sub16_bytes(*m.W.shape), kl * ratio)
        print("%-15s sub16 %6d bytes, KL rtn %.4f (q3s rtn %.4f, %d bytes), gptq estimate %.4f (q3s %.4f; q4s %.4f, %d bytes)" % (
            m.name, extra[m.name][0], kl, o["q3s", "rtn"]["loss"], o["q3s", "rtn"]["bytes"], kl * ratio,
            o["q3s", "gptq"]["loss"], o["q4s", "gptq"]["loss"], o["q4s", "gptq"]["bytes"]), flush=True)
    for b in budgets:
        items = [[(o["bytes"] // budget.ALIGN, o["loss"]) for o in m.options] for m in mats]
        base = budget.choose(items, (b - fixed) // budget.ALIGN)
        with_16 = [it + ([(extra[m.name][0] // budget.ALIGN, extra[m.name][1])] if m.name in extra else [])
                   for it, m in zip(items, mats)]
        got = budget.choose(with_16, (b - fixed) // budget.ALIGN)
        n16 = sum(j == len(m.options) for m, j in zip(mats, got[0]))
        print("budget %d: predicted KL %.4f without sub16, %.4f with it (%d matrices take it)" % (b, base[1], got[1], n16))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--text", default=budget_frontier.TEXT)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--heal", nargs=2, metavar=("SECONDS", "KIND"), help="KIND: q4s or nl4s")
    ap.add_argument("--entropy", action="store_true", help="the stored codes' entropy per kind, then stop")
    ap.add_argument("--equalize", action="store_true", help="AWQ-style equalisation before q3s, then stop")
    ap.add_argument("--sub16", metavar="BUDGETS", help="a 16-value sub-block 3-bit kind in the knapsack, then stop")
    a = ap.parse_args()
    if a.entropy:
        return code_entropy(a.model)
    if a.sub16:
        return sub16_study(a, [int(b) for b in a.sub16.split(",")])
    if a.equalize:
        s = budget.Session(a.model, a.text, stories="1-300", rounding="gptq", samples=0, calib_windows=a.windows)
        x = s.train_x[:a.windows]
        return equalize_study(s, x, budget.teacher_logprobs(s.model, x))
    s = budget.Session(a.model, a.text, stories="1-300", rounding="rtn", samples=32 if a.heal else 0,
                       calib_windows=a.windows)
    x = s.train_x[:a.windows]
    t_lp = budget.teacher_logprobs(s.model, x)
    mats = budget.matrices(s.model, "quant", "rtn")
    params = {m.name: budget.weight_param(s.model, m.name) for m in mats}
    orig = {n: p.detach().clone() for n, p in params.items()}

    def run(label, rounded):
        rel = 0.0
        for m in mats:
            q = rounded(m.W)
            rel += ((q - m.W) ** 2).sum() / (m.W ** 2).sum()
            params[m.name].copy_(torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).view_as(params[m.name]))
        kl, agree = budget.kl_to(s.model, x, t_lp)
        print("%-5s KL %.4f  greedy agreement %.3f  sum of relative squared errors %.4f" % (label, kl, agree, rel), flush=True)
        for n, p in params.items():
            p.copy_(orig[n])

    if a.heal:
        return heal_kind(s, mats, a.heal[1], float(a.heal[0]), a.text)
    print("%s: %d matrices, %d windows of %d tokens" % (a.model, len(mats), len(x), x.shape[1]))
    for kind in ("q8", "q4", "q4s", "q3s"):
        run(kind, lambda W, k=kind: budget.roundtrip(W, k))
    run("nl4", lambda W: grid_blocks(W, IQ4_NL))
    run("nl4s", lambda W: grid_blocks(W, IQ4_NL, True))
    run("nl3s", lambda W: grid_blocks(W, GRID3, True))


if __name__ == "__main__":
    main()
