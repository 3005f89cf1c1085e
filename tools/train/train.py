"""Trains a Q-TensorFormer (or the dense baseline) on character-level tiny Shakespeare and exports it.

    python3 train.py --preset shakespeare-qtf --out runs/qtf [--max_steps 5000] [--time_budget_s 450]

AdamW, linear warmup then cosine decay, gradient clipping, periodic validation loss, checkpoints
(out/ckpt.pt, the best validation loss so far) and, at the end, out/NAME.qtf from the best weights
(summary in out/NAME.json). The schedule's progress is max(step / max_steps,
elapsed / time_budget_s), so a wall-clock budget still ends on a fully decayed learning rate.
Progress line: step, loss, learning rate, tokens/s, router share (fraction of quantum tokens), mean rank.
Validation lines add the rank histogram per layer ("L0 2:80% 3:20%"), which the summary also keeps.

Any config field can be set: --set d_model=64 --set d_factors=4,4,4 --set dropout=0.1. Unless --set alpha
is given, alpha maps the entropy range [0, Q/2] onto [r_min, r_max] (MODEL.md): (r_max - r_min + 1) / (Q/2).
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import data
from export import describe_trim, export_qtf, trim_unused
from model import Config, QTensorFormer, dense_baseline

try:
    from tqdm import tqdm
except ImportError:  # python3-tqdm (tools/setup.sh); without it, no progress bar
    tqdm = None

SEED = Config()  # the spec's seed config
PRESETS = {
    "shakespeare-qtf": SEED,
    "shakespeare-dense": dense_baseline(SEED),
    "shakespeare-qtf-r4": Config(**{**SEED.to_dict(), "tt_rank": 4, "r_max": 4}),
}


def full_range_alpha(cfg):
    """alpha that maps S in [0, Q/2] onto [r_min, r_max] (S = Q/2 clamps to r_max)."""
    return (cfg.r_max - cfg.r_min + 1) / (cfg.n_qubits / 2) if cfg.n_qubits > 0 else cfg.alpha


def parse_sets(pairs, base):
    """--set key=value overrides of a Config (lists: comma-separated ints)."""
    d = base.to_dict()
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        if key not in d:
            raise SystemExit("--set: unknown config field %r" % key)
        old = d[key]
        if isinstance(old, list):
            d[key] = [int(v) for v in value.split(",")]
        elif isinstance(old, bool) or isinstance(old, int):
            d[key] = int(value)
        elif isinstance(old, float):
            d[key] = float(value)
        else:
            d[key] = value
    return Config(**d), {p.partition("=")[0] for p in pairs or []}


def progress(total, desc):
    """A tqdm bar when tqdm is installed and stderr is a terminal (or QTF_TQDM=1), else a no-op."""
    if tqdm is None or not (os.isatty(2) or os.environ.get("QTF_TQDM") == "1"):
        class Null:
            def update(self, n=1):
                pass

            def set_postfix_str(self, s):
                pass

            def close(self):
                pass
        return Null()
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def batches(ids, batch, T, gen, device):
    ix = torch.randint(len(ids) - T - 1, (batch,), generator=gen)
    x = torch.stack([torch.from_numpy(ids[i:i + T]) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(ids[i + 1:i + 1 + T]) for i in ix.tolist()])
    return x.to(device), y.to(device)


def router_summary(stats):
    """(share of quantum tokens, mean rank) over all layers of one forward pass."""
    share = [s["quantum"].float().mean() for s in stats if "quantum" in s]
    rank = torch.stack([s["rank"].float().mean() for s in stats]).mean().item()
    return (torch.stack(share).mean().item() if share else 0.0), rank


def rank_histograms(stats, hists=None):
    """Adds one forward pass's per-token ranks to per-layer histograms [{rank: count}] (returned)."""
    hists = hists if hists is not None else [{} for _ in stats]
    for h, s in zip(hists, stats):
        r, c = torch.unique(s["rank"], return_counts=True)
        for ri, ci in zip(r.tolist(), c.tolist()):
            h[ri] = h.get(ri, 0) + ci
    return [dict(sorted(h.items())) for h in hists]


def format_histograms(hists):
    """'L0 2:80% 3:20% | L1 ...' (share of tokens per rank, per layer)."""
    out = []
    for l, h in enumerate(hists):
        n = sum(h.values()) or 1
        out.append("L%d " % l + " ".join("%d:%.0f%%" % (r, 100.0 * c / n) for r, c in h.items()))
    return " | ".join(out)


@torch.no_grad()
def evaluate(model, ids, batch, T, iters, device, seed=1234):
    """Mean cross-entropy (nats/char) on fixed random windows, router share, rank histogram per layer."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses, shares, hists = [], [], None
    for _ in range(iters):
        x, y = batches(ids, batch, T, gen, device)
        logits, stats = model(x)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item())
        shares.append(router_summary(stats)[0])
        hists = rank_histograms(stats, hists)
    model.train()
    return float(np.mean(losses)), float(np.mean(shares)), hists


def merged(hists):
    """All layers' histograms summed."""
    out = {}
    for h in hists:
        for r, c in h.items():
            out[r] = out.get(r, 0) + c
    return dict(sorted(out.items()))


def make_optimizer(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for p in model.parameters() if p.dim() < 2 and p.requires_grad]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def cosine_lr(step, elapsed, args):
    """Linear warmup, then cosine to min_lr over max(step / max_steps, elapsed / time_budget_s)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, max(step / args.max_steps, elapsed / args.time_budget_s))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare-qtf")
    ap.add_argument("--name", help="model name (default: the preset)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max_steps", type=int, default=5000)
    ap.add_argument("--time_budget_s", type=float, default=float("inf"))
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min_lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight_decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--router_penalty", type=float, default=0.0, help="weight of (mean g - target)^2")
    ap.add_argument("--router_target", type=float, default=0.2)
    ap.add_argument("--eval_every", type=int, default=500)
    ap.add_argument("--eval_iters", type=int, default=20)
    ap.add_argument("--final_eval_iters", type=int, default=100)
    ap.add_argument("--log_every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32", help="exported weight type")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--no_trim", action="store_true", help="export every stored TT bond component, even those no "
                    "token selected in the final validation (default: trim them, export.trim_unused)")
    args = ap.parse_args()
    name = args.name or args.preset
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # keep f32 numerics close to the engine's

    path = data.data_path(args.data)
    text = data.load_text(path)
    vocab = data.char_vocab(text)
    train_ids, val_ids = data.split(data.encode(text, vocab))
    cfg, given = parse_sets(args.set, PRESETS[args.preset])
    cfg = Config(**{**cfg.to_dict(), "vocab_size": len(vocab)})
    if "alpha" not in given and cfg.n_qubits > 0:
        cfg.alpha = full_range_alpha(cfg)
    T = cfg.context
    model = QTensorFormer(cfg).to(args.device)
    total, block = model.param_counts()
    print("%s: %d parameters (%d in blocks), config %s" % (name, total, block, json.dumps(cfg.to_dict())),
          flush=True)

    opt = make_optimizer(model, args.lr, args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    t0, step, log = time.time(), 0, []
    lr_at = lambda step, elapsed: cosine_lr(step, elapsed, args)

    def checkpoint(val_loss):
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "tokens": vocab, "step": step,
                    "val_loss": val_loss}, os.path.join(args.out, "ckpt.pt"))

    tick, tick_step = time.time(), 0
    best = {"val": float("inf"), "step": 0, "state": None}

    def validate():
        """Periodic validation; keeps the best weights (small data: long runs overfit)."""
        vl, vshare, hists = evaluate(model, val_ids, args.batch, T, args.eval_iters, args.device)
        log.append({"step": step, "val_loss": vl, "router_share": vshare, "time_s": round(time.time() - t0, 1),
                    "rank_histogram_per_layer": hists})
        print("step %5d  val %.4f  router %.3f  ranks %s" % (step, vl, vshare, format_histograms(hists)),
              flush=True)
        if vl < best["val"]:
            best.update(val=vl, step=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})
            checkpoint(vl)
    bar = progress(args.max_steps if args.max_steps < 10 ** 6 else None, name)
    while True:
        elapsed = time.time() - t0
        if step >= args.max_steps or elapsed >= args.time_budget_s:
            break
        lr = lr_at(step, elapsed)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batches(train_ids, args.batch, T, gen, args.device)
        logits, stats = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        objective = loss
        gates = [s["g"].mean() for s in stats if "g" in s]
        if args.router_penalty > 0 and gates:
            objective = loss + args.router_penalty * (torch.stack(gates).mean() - args.router_target) ** 2
        opt.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        bar.update()
        if step % args.log_every == 0:
            share, rank = router_summary(stats)
            now = time.time()
            tps = (step - tick_step) * args.batch * T / (now - tick)
            tick, tick_step = now, step
            bar.set_postfix_str("loss %.3f %.0f tok/s" % (loss.item(), tps))
            print("step %5d  loss %.4f  lr %.2e  %7.0f tok/s  router %.3f  rank %.2f  %.0fs" % (
                step, loss.item(), lr, tps, share, rank, now - t0), flush=True)
        if step % args.eval_every == 0:
            validate()
    bar.close()
    train_time = time.time() - t0
    total_steps = step
    if not log or log[-1]["step"] != step:
        validate()
    model.load_state_dict(best["state"])
    step = best["step"]

    vl, vshare, hists = evaluate(model, val_ids, args.batch, T, args.final_eval_iters, args.device)
    hist = merged(hists)
    checkpoint(vl)
    trimmed = {} if args.no_trim else trim_unused(model, hists)
    if trimmed:
        print("trimmed unused TT bond components: %s" % describe_trim(trimmed), flush=True)
        total, block = model.param_counts()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    summary = {"name": name, "steps": step, "steps_run": total_steps, "train_time_s": round(train_time, 1),
               "val_loss": vl,
               "val_ppl": math.exp(vl), "router_share": vshare, "rank_histogram": hist,
               "rank_histogram_per_layer": hists, "config": cfg.to_dict(),
               "params_total": total, "params_block": block, "batch": args.batch, "context": T,
               "tokens_seen": step * args.batch * T, "trimmed": describe_trim(trimmed),
               "device": device_name, "torch": torch.__version__,
               "val_tokens_evaluated": args.final_eval_iters * args.batch * T, "evals": log}
    provenance = {"data_sha256": data.sha256_file(path), "train_steps": step, "val_loss": vl,
                  "train_time_s": round(train_time, 1),
                  "created_by": "tools/train/train.py --preset %s (torch %s, %s)" % (
                      args.preset, torch.__version__, device_name)}
    if trimmed:
        provenance["trimmed"] = describe_trim(trimmed)
    qtf = os.path.join(args.out, name + ".qtf")
    size = len(export_qtf(model.cpu(), qtf, vocab, provenance, args.dtype))
    summary["file"], summary["file_bytes"] = os.path.basename(qtf), size
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("final: val %.4f (ppl %.3f)  router %.3f  ranks %s  %d steps in %.0fs  -> %s (%d bytes)" % (
        vl, math.exp(vl), vshare, format_histograms(hists), step, train_time, qtf, size), flush=True)


if __name__ == "__main__":
    main()
