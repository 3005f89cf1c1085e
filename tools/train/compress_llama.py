"""Compresses a converted llama2.c model (tools/convert/llama2c.py) into a TT model, healed by distillation
on sequences sampled from the original model itself (docs/llama.md, "Compression").

    python3 tools/train/compress_llama.py --teacher stories260K.qtf --out DIR [--ratios 2,4,8] [--steps 600]

1. Samples: --train + --heldout sequences of --seq tokens from the teacher through the engine (libqtf.so via
   python/qtf): BOS, then ancestral sampling at temperature 1 (full softmax, no top-k/p), fixed seeds.
   Nothing from outside: the teacher's own distribution is the only data.
2. TT-SVD of every block linear (tools/train/compress.py: tt_svd_linear, tt_errors, allocate_ranks) at the
   block compression ratio r = teacher block parameters / student block parameters, ranks allocated per
   matrix; factors d 64 = [8, 8], kv 32 = [4, 8], d_ff 172 = [4, 43] (K = 2).
3. Healing: compress.distill (KL(teacher || student) + CE on the sampled sequences), AdamW, cosine.
4. Held-out metrics (teacher-forced on the held-out samples): mean KL(teacher || student) per token (nats),
   greedy-token agreement (argmax student == argmax teacher), before and after healing; the .qtf's size;
   the engine's logits checked against this reference (max |diff|).
Writes DIR/stories260K-ttRx.qtf, DIR/compress_llama.json (everything), DIR/samples.npz.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import llama  # noqa: E402
from engine_sample import sample_engine  # noqa: E402
from compress import allocate_ranks, distill, tt_errors, tt_params, tt_svd_linear  # noqa: E402
from model import tt_bond_ranks  # noqa: E402

FACTORS = {"d": [8, 8], "kv": [4, 8], "ff": [4, 43]}
LINEARS = {"q": ("d", "d"), "k": ("kv", "d"), "v": ("kv", "d"), "o": ("d", "d"),
           "gate": ("ff", "d"), "up": ("ff", "d"), "down": ("d", "ff")}  # name: (out, in)


def block_params(model):
    return sum(p.numel() for p in model.blocks.parameters())


def make_student(teacher, ratio, alloc="relative", log=print):
    tcfg = teacher.cfg
    weights, errors, meta = {}, {}, {}
    for l, blk in enumerate(teacher.blocks):
        for n, (o, i) in LINEARS.items():
            W = getattr(blk, n).weight.detach().double().cpu()  # TT-SVD on the CPU
            key = "%d.%s" % (l, n)
            weights[key] = W
            errors[key] = tt_errors(W, FACTORS[o], FACTORS[i])
            meta[key] = (FACTORS[o], FACTORS[i], W.norm().item())
    t_block = block_params(teacher)
    norms = sum(p.numel() for n, p in teacher.blocks.named_parameters() if "ln" in n)
    if alloc == "relative":  # every matrix's relative error counts the same (compress.py weighs by ||W||)
        meta = {k: (o, i, 1.0) for k, (o, i, _) in meta.items()}
    ranks = allocate_ranks(errors, meta, t_block / ratio - norms, uniform=alloc == "uniform")
    top = max(ranks.values())
    cfg = llama.LlamaConfig(**{**tcfg.to_dict(), "tensorized": 1, "d_factors": FACTORS["d"],
                               "ff_factors": FACTORS["ff"], "kv_factors": FACTORS["kv"], "tt_rank": top})
    student = llama.Llama(cfg).to(teacher.tok_emb.weight.device)
    with torch.no_grad():
        student.tok_emb.weight.copy_(teacher.tok_emb.weight)
        student.lnf.load_state_dict(teacher.lnf.state_dict())
        for l, (sb, tb) in enumerate(zip(student.blocks, teacher.blocks)):
            sb.ln1.load_state_dict(tb.ln1.state_dict())
            sb.ln2.load_state_dict(tb.ln2.state_dict())
            for n, (o, i) in LINEARS.items():
                key = "%d.%s" % (l, n)
                lin = tt_svd_linear(weights[key].cpu(), (FACTORS[o], FACTORS[i]), ranks[key]).float()
                del lin.bias  # the Llama linears have no bias
                lin.register_buffer("bias", torch.zeros(math.prod(FACTORS[o])), persistent=False)
                lin = lin.to(teacher.tok_emb.weight.device)
                setattr(sb, n, lin)
    s_block = block_params(student)
    chosen = {k: errors[k][ranks[k]] for k in ranks}
    log("ratio %g: block params %d -> %d (%.2fx), ranks %s" % (ratio, t_block, s_block, t_block / s_block,
                                                              " ".join("%s:%d" % kv for kv in ranks.items())))
    return student, {"ranks": ranks, "teacher_block_params": t_block, "student_block_params": s_block,
                     "block_ratio": t_block / s_block, "svd_rel_error_mean": float(np.mean(list(chosen.values()))),
                     "svd_rel_error_max": float(max(chosen.values()))}


@torch.no_grad()
def heldout_metrics(student, teacher, heldout, batch=16):
    kl_sum, agree, n = 0.0, 0, 0
    for b in range(0, len(heldout), batch):
        x = torch.as_tensor(heldout[b:b + batch]).to(teacher.tok_emb.weight.device)
        t = F.log_softmax(teacher(x)[0].double(), -1)
        s = F.log_softmax(student(x)[0].double(), -1)
        kl_sum += (t.exp() * (t - s)).sum().item()
        agree += (t.argmax(-1) == s.argmax(-1)).sum().item()
        n += x.numel()
    return {"kl": kl_sum / n, "agreement": agree / n}


@torch.no_grad()
def bigram_baseline(teacher, train, heldout, alphas=(0.01, 0.1, 0.5, 1.0)):
    """Reference predictors scored like a student on the held-out samples: next-token counts of the training
    samples (add-alpha; the best alpha is reported): KL(teacher || bigram) and greedy agreement; and the
    uniform distribution's KL."""
    V = teacher.cfg.vocab_size
    counts = np.zeros((V, V))
    np.add.at(counts, (train[:, :-1].ravel(), train[:, 1:].ravel()), 1.0)
    x = torch.as_tensor(heldout).to(teacher.tok_emb.weight.device)
    t = F.log_softmax(teacher(x)[0].double(), -1).cpu()
    best = None
    for a in alphas:
        q = torch.as_tensor(np.log((counts + a) / (counts + a).sum(1, keepdims=True)))[torch.as_tensor(heldout)]
        kl = (t.exp() * (t - q)).sum(-1).mean().item()
        agree = (t.argmax(-1) == q.argmax(-1)).double().mean().item()
        if best is None or kl < best["kl"]:
            best = {"alpha": a, "kl": kl, "agreement": agree}
    best["uniform_kl"] = (t.exp() * t).sum(-1).mean().item() + math.log(V)  # KL(teacher || uniform)
    best["teacher_entropy"] = math.log(V) - best["uniform_kl"]
    return best


def engine_check(path, model, tokens):
    """max |engine logits - reference logits| over a held-out sequence."""
    import qtf
    m = qtf.Model(path)
    ctx = m.context(n_ctx=len(tokens))
    got = []
    for t in tokens:
        ctx.decode([int(t)])
        got.append(ctx.logits)
    with torch.no_grad():
        ref = model.double()(torch.as_tensor(tokens[None]).to(model.tok_emb.weight.device))[0][0].cpu().numpy()
    model.float()
    return float(np.abs(np.array(got) - ref).max())


def plot_svg(results, path, baselines=()):
    """KL to the teacher and greedy agreement vs block compression ratio (log2 x), TT-SVD only and healed,
    for every allocation in results (a list of compress_llama.json documents)."""
    W, H, pw, ph, top, left, gap = 820, 420, 330, 270, 50, 70, 80
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="12">' % (W, H, W, H), '<rect width="%d" height="%d" fill="white"/>' % (W, H),
           '<text x="%d" y="24" font-size="15" font-weight="bold">stories260K (llama2.c) compressed: held-out '
           'samples of the original model</text>' % left]
    runs = [(doc.get("alloc", "?"), r) for doc in results for r in doc["runs"]]
    xs = [math.log2(r["block_ratio"]) for _, r in runs]
    x_lo, x_hi = 0.0, max(4.0, math.ceil(max(xs)))
    kl_hi = 10 ** math.ceil(math.log10(max(r[k]["kl"] for _, r in runs for k in ("svd_only", "healed"))))
    panels = [("KL(original || compressed), nats/token (log)", "kl", kl_hi / 100, kl_hi),
              ("greedy-token agreement with the original", "agreement", 0.0, 1.0)]
    colors = {"svd_only": "#c44", "healed": "#26a"}
    dashes = {"uniform": "", "relative": "6,4", "frobenius": "2,3"}
    for p, (title, key, y_lo, y_hi) in enumerate(panels):
        x0 = left + p * (pw + gap)
        X = lambda v: x0 + (v - x_lo) / (x_hi - x_lo) * pw
        if key == "kl":  # log axis
            Y = lambda v: top + ph - (math.log10(max(v, y_lo)) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph
            ticks = [m * 10 ** e for e in range(int(math.log10(y_lo)), int(math.log10(y_hi)) + 1) for m in (1, 2, 5)
                     if y_lo <= m * 10 ** e <= y_hi]
        else:
            Y = lambda v: top + ph - (v - y_lo) / (y_hi - y_lo) * ph
            ticks = [y_lo + (y_hi - y_lo) * j / 5 for j in range(6)]
        out.append('<text x="%d" y="%d">%s</text>' % (x0, top - 8, title))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (x0, top, pw, ph))
        for i in range(int(x_lo), int(x_hi) + 1):
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(i), top, X(i), top + ph))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%gx</text>' % (X(i), top + ph + 16, 2 ** i))
        for v in ticks:
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (x0, Y(v), x0 + pw, Y(v)))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (x0 - 4, Y(v) + 4, round(v, 2)))
        out.append('<text x="%d" y="%d" text-anchor="middle">block compression (teacher / student block '
                   'parameters)</text>' % (x0 + pw // 2, top + ph + 34))
        for name, kl, agree in baselines:  # reference predictors: a horizontal line each
            v = kl if key == "kl" else agree
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#999" stroke-dasharray="1,3"/>' % (
                x0, Y(v), x0 + pw, Y(v)))
            out.append('<text x="%d" y="%.1f" text-anchor="end" fill="#777">%s</text>' % (x0 + pw - 4, Y(v) - 4, name))
        for alloc in sorted({a for a, _ in runs}):
            pts = sorted((math.log2(r["block_ratio"]), r) for a, r in runs if a == alloc)
            for stage in ("svd_only", "healed"):
                start = [(X(0), Y(1.0))] if key == "agreement" else []  # the original itself: agreement 1, KL 0
                xy = start + [(X(x), Y(r[stage][key])) for x, r in pts]
                out.append('<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>' % (
                    colors[stage], dashes.get(alloc, ""), " ".join("%.1f,%.1f" % q for q in xy)))
                out += ['<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (a, b, colors[stage]) for a, b in xy[len(start):]]
    steps = sorted({r["heal_steps"] for _, r in runs})
    legend = [("TT-SVD only", colors["svd_only"], ""),
              ("healed (%s steps)" % ("-".join(str(x) for x in (steps[0], steps[-1]) if x) if steps[0] != steps[-1]
                                      else steps[0]), colors["healed"], "")]
    legend += [("ranks: %s" % a, "#444", dashes.get(a, "")) for a in sorted({a for a, _ in runs})]
    for i, (label, col, dash) in enumerate(legend):  # one row under the panels
        x, y = left + 175 * i, H - 14
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>' % (
            x, y - 4, x + 28, y - 4, col, dash))
        out.append('<text x="%d" y="%d">%s</text>' % (x + 34, y, label))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="converted llama2.c model (.qtf)")
    ap.add_argument("--out")
    ap.add_argument("--ratios", default="2,4,8")
    ap.add_argument("--train", type=int, default=384)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--alloc", choices=["relative", "frobenius", "uniform"], default="relative",
                    help="rank allocation: equal weight per matrix's relative error (default), compress.py's "
                         "absolute Frobenius error, or one rank everywhere")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of healing per ratio (cap)")
    ap.add_argument("--sample-only", action="store_true", help="only write DIR/samples.npz (engine, CPU)")
    ap.add_argument("--bigram-only", action="store_true",
                    help="only score the count bigram of DIR/samples.npz (a reference line for --plot)")
    ap.add_argument("--no-engine-check", action="store_true", help="skip the libqtf.so logits check")
    ap.add_argument("--plot", nargs="+", metavar="FILE",
                    help="only draw: compress_llama.json files ..., the last argument the .svg to write")
    ap.add_argument("--baseline", action="append", default=[], metavar="NAME:KL:AGREEMENT",
                    help="a reference predictor drawn as a horizontal line (with --plot)")
    args = ap.parse_args()
    if args.plot:
        base = [(b.rsplit(":", 2)[0], float(b.rsplit(":", 2)[1]), float(b.rsplit(":", 2)[2])) for b in args.baseline]
        plot_svg([json.load(open(f)) for f in args.plot[:-1]], args.plot[-1], base)
        return
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    samples_path = os.path.join(args.out, "samples.npz")
    if os.path.exists(samples_path):
        z = np.load(samples_path)
        train, heldout = z["train"], z["heldout"]
    else:
        t0 = time.time()
        import qtf
        train = sample_engine(qtf, args.teacher, args.train, args.seq, args.seed, bos=1)
        heldout = sample_engine(qtf, args.teacher, args.heldout, args.seq, args.seed + 1, bos=1)
        np.savez_compressed(samples_path, train=train, heldout=heldout)
        log("sampled %d + %d sequences of %d tokens from the teacher in %.0f s" % (
            len(train), len(heldout), args.seq, time.time() - t0))
    if args.sample_only:
        return
    dev = torch.device(args.device)
    teacher, meta = llama.load_qtf(args.teacher)
    teacher = teacher.to(dev)
    if args.bigram_only:
        b = bigram_baseline(teacher, train, heldout)
        log("count bigram of the %d training samples (add-%g): KL %.4f nats/token, greedy agreement %.3f; "
            "uniform: KL %.4f (the teacher's entropy on the held-out samples: %.3f nats/token)" % (
                len(train), b["alpha"], b["kl"], b["agreement"], b["uniform_kl"], b["teacher_entropy"]))
        return
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher_fn = lambda x: teacher(x)[0]
    gen = torch.Generator().manual_seed(args.seed)
    train_t = torch.as_tensor(train).to(dev)

    def batches():
        idx = torch.randint(0, len(train_t), (args.batch,), generator=gen).to(dev)
        x = train_t[idx]
        return x[:, :-1], x[:, 1:]

    results = {"teacher": os.path.basename(args.teacher), "teacher_bytes": os.path.getsize(args.teacher),
               "teacher_block_params": block_params(teacher), "samples": {"train": len(train),
               "heldout": len(heldout), "seq": args.seq, "seed": args.seed}, "steps": args.steps,
               "batch": args.batch, "lr": args.lr, "alloc": args.alloc, "device": str(dev), "runs": []}
    for ratio in [float(r) for r in args.ratios.split(",")]:
        student, rep = make_student(teacher, ratio, args.alloc, log)
        rep["ratio_target"] = ratio
        rep["svd_only"] = heldout_metrics(student, teacher, heldout)
        log("  TT-SVD only: KL %.4f nats/token, greedy agreement %.3f" % (rep["svd_only"]["kl"],
                                                                          rep["svd_only"]["agreement"]))
        t0 = time.time()
        hist = distill(student, teacher_fn, batches, args.steps, lr=args.lr, min_lr=args.lr / 20, warmup=30,
                       weight_decay=0.0, kl_weight=1.0, ce_weight=0.0, eval_every=0, log=lambda m: None,
                       time_budget_s=args.time_budget,
                       progress_desc="heal %gx" % ratio)
        student.eval()
        rep["heal_time_s"] = round(time.time() - t0, 1)
        rep["heal_steps"] = hist["steps_run"]
        rep["healed"] = heldout_metrics(student, teacher, heldout)
        log("  healed (%d steps, %.0f s): KL %.4f, greedy agreement %.3f" % (
            hist["steps_run"], rep["heal_time_s"], rep["healed"]["kl"], rep["healed"]["agreement"]))
        name = "stories260K-tt%gx.qtf" % ratio
        path = os.path.join(args.out, name)
        llama.export_qtf(student, path, llama.stand_in_tokens(student.cfg.vocab_size), {
            "created_by": "tools/train/compress_llama.py", "teacher": os.path.basename(args.teacher),
            "teacher_sha256": meta.get("provenance.source_sha256", ""), "block_ratio": rep["block_ratio"],
            "heal_steps": hist["steps_run"], "heal_data": "%d sequences x %d tokens sampled from the teacher" % (
                len(train), args.seq)})
        rep["file"] = name
        rep["bytes"] = os.path.getsize(path)
        if not args.no_engine_check:
            rep["engine_max_abs_logit_diff"] = engine_check(path, student, heldout[0][:64])
        log("  %s: %d bytes, engine vs reference max |logit diff| %s" % (
            name, rep["bytes"], "%.2e" % rep["engine_max_abs_logit_diff"] if "engine_max_abs_logit_diff" in rep else "-"))
        results["runs"].append(rep)
        with open(os.path.join(args.out, "compress_llama.json"), "w") as f:
            json.dump({**results, "log": log_lines}, f, indent=1)


if __name__ == "__main__":
    main()
