"""Compresses a trained dense model into a TT (Q-TensorFormer) model: TT-SVD of every linear, then healing
by distillation from the dense teacher.

    python3 compress.py --teacher T.qtf|ckpt.pt --out DIR --ratio 8 [--quantum] [--steps 1500]
    python3 compress.py --teacher T.qtf --out DIR --budget 74000     # block parameters
    python3 compress.py --teacher T.qtf --out DIR --max_error 0.3    # per-matrix relative Frobenius error

1. TT-SVD (sequential truncated SVDs, left to right) of every block linear. Singular vectors come out in
   decreasing order, so the leading bond components carry the most: truncating a token's bonds to its
   run-time rank r (MODEL.md) keeps the best part of the matrix. The relative Frobenius error of every
   matrix at every rank is reported (out/NAME.json, "errors").
2. Rank choice: --ratio / --budget take the largest single rank whose model fits the block-parameter
   budget (default), or with --greedy allocate ranks per matrix (largest drop in squared error per added
   parameter until the budget is spent: lower TT-SVD error, but measured worse after healing, see
   models/README.md); --max_error takes per matrix the smallest rank within the error.
3. --quantum adds the quantum encoder, adaptive rank, router, kernel attention and DARUAN, initialised so
   the model starts close to the teacher: qout = 0 (the encoder adds nothing), DARUAN fitted to GELU, the
   encoder's circuit chosen for high entanglement (ranks near r_max), theta set so that the router's
   target share of tokens is quantum. Their parameters count in the budget.
4. Healing (--steps > 0): AdamW on KL(teacher || student) + CE, best validation weights kept.
5. Export: out/NAME.qtf with provenance (teacher, its sha256, ratio, ranks, steps, tokens), out/NAME.json.

The functions are the API (issue 18 reuses them for foreign models): tt_svd, tt_svd_linear, tt_errors,
allocate_ranks, compress_model, init_quantum_parts, fit_daruan_to_gelu, distill.
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
from export import describe_trim, export_qtf, load_qtf, trim_unused
from model import Config, Daruan, QTensorFormer, TTLinear, tt_bond_ranks
import train as trainlib


# ---------------------------------------------------------------------------------------------------
# TT-SVD

def factorize(n, K=3):
    """n as K factors as equal as possible, largest last (128 -> [4, 4, 8], 512 -> [8, 8, 8])."""
    best = None

    def rec(rest, k, lo, acc):
        nonlocal best
        if k == 1:
            if rest >= lo:
                f = acc + [rest]
                score = max(f) / min(f)
                if best is None or score < best[0]:
                    best = (score, f)
            return
        d = lo
        while d ** k <= rest:
            if rest % d == 0:
                rec(rest // d, k - 1, d, acc + [d])
            d += 1
    rec(n, K, 1, [])
    if best is None:
        raise ValueError("%d has no %d factors" % (n, K))
    return best[1]


def tt_svd(W, out_factors, in_factors, rank):
    """TT-matrix cores of W [M, N] (M = prod out_factors, N = prod in_factors) by sequential truncated SVDs.

    rank: an int (every bond min(rank, TT maximum)) or the full list [1, r_1, .., r_{K-1}, 1].
    Returns cores [r_{k-1}, m_k, n_k, r_k] (float64), leading bond components first, norms balanced
    across cores (the product, and so W, is unchanged)."""
    W = torch.as_tensor(W, dtype=torch.float64)
    K = len(out_factors)
    ranks = tt_bond_ranks(out_factors, in_factors, rank) if isinstance(rank, int) else list(rank)
    # [m_1..m_K, n_1..n_K] -> [m_1, n_1, m_2, n_2, ...]: core k owns the index pair (i_k, j_k)
    t = W.reshape(*out_factors, *in_factors)
    t = t.permute(*[p for k in range(K) for p in (k, K + k)])
    cores, r_prev = [], 1
    C = t.reshape(r_prev * out_factors[0] * in_factors[0], -1)
    for k in range(K - 1):
        U, S, Vh = torch.linalg.svd(C, full_matrices=False)
        r = min(ranks[k + 1], S.numel())
        cores.append(U[:, :r].reshape(r_prev, out_factors[k], in_factors[k], r))
        C = (S[:r, None] * Vh[:r]).reshape(r * out_factors[k + 1] * in_factors[k + 1], -1)
        r_prev = r
    cores.append(C.reshape(r_prev, out_factors[-1], in_factors[-1], 1))
    norms = torch.stack([c.norm() for c in cores])
    if bool((norms > 0).all()):
        g = norms.log().mean().exp()
        cores = [c * (g / n) for c, n in zip(cores, norms)]
    return cores


def tt_svd_linear(W, shape, rank, bias=None, dtype=torch.float32):
    """A TTLinear approximating y = W x + bias. shape = (out_factors, in_factors); rank as in tt_svd."""
    out_f, in_f = shape
    cores = tt_svd(W, out_f, in_f, rank)
    lin = TTLinear(in_f, out_f, max(c.shape[-1] for c in cores[:-1]) if len(cores) > 1 else 1,
                   ranks=[1] + [c.shape[-1] for c in cores[:-1]] + [1]).to(dtype)
    with torch.no_grad():
        for p, c in zip(lin.cores, cores):
            p.copy_(c.to(p.dtype))
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(bias, dtype=lin.bias.dtype))
    return lin


def tt_params(out_factors, in_factors, ranks):
    return sum(ranks[k] * out_factors[k] * in_factors[k] * ranks[k + 1] for k in range(len(out_factors)))


def tt_errors(W, out_factors, in_factors, max_rank=None):
    """{rank: relative Frobenius error of the rank-r TT-SVD} for r = 1 .. the TT maximum (or max_rank);
    the run-time truncation of a higher-rank TT-SVD to its leading r components is reported apart
    (prefix_errors)."""
    W = torch.as_tensor(W, dtype=torch.float64)
    full = max(tt_bond_ranks(out_factors, in_factors, 1 << 30))
    top = full if max_rank is None else min(full, max_rank)
    norm = W.norm().item()
    out = {}
    for r in range(1, top + 1):
        lin = tt_svd_linear(W, (out_factors, in_factors), r, dtype=torch.float64)
        out[r] = (lin.dense_weight() - W).norm().item() / norm
    return out


def prefix_errors(lin, W):
    """{r: relative error of lin's W truncated at run time to its leading r bond components}."""
    W = torch.as_tensor(W, dtype=torch.float64)
    norm = W.norm().item()
    with torch.no_grad():
        return {r: (lin.dense_weight(r).double() - W).norm().item() / norm for r in range(1, max(lin.ranks) + 1)}


def allocate_ranks(errors, shapes, budget, uniform=False):
    """Rank per matrix within `budget` TT-core parameters.

    errors: {name: {rank: rel error}}, shapes: {name: (out_factors, in_factors, ||W||_F)}.
    Greedy: start at rank 1 everywhere, repeatedly raise by one the rank of the matrix with the largest
    drop in squared absolute error per added parameter. uniform=True: the largest single rank that fits."""
    def params(name, r):
        of, inf, _ = shapes[name]
        return tt_params(of, inf, tt_bond_ranks(of, inf, r))

    if uniform:
        best = {n: 1 for n in errors}
        for r in range(1, max(max(e) for e in errors.values()) + 1):
            cand = {n: min(r, max(errors[n])) for n in errors}
            if sum(params(n, cand[n]) for n in errors) <= budget:
                best = cand
        return best
    ranks = {n: 1 for n in errors}
    spent = sum(params(n, 1) for n in errors)
    while True:
        best, best_gain = None, 0.0
        for n in errors:
            r = ranks[n]
            if r + 1 not in errors[n]:
                continue
            dp = params(n, r + 1) - params(n, r)
            if dp <= 0 or spent + dp > budget:
                continue
            norm = shapes[n][2]
            gain = ((errors[n][r] * norm) ** 2 - (errors[n][r + 1] * norm) ** 2) / dp
            if best is None or gain > best_gain:
                best, best_gain = n, gain
        if best is None:
            return ranks
        spent += params(best, ranks[best] + 1) - params(best, ranks[best])
        ranks[best] += 1


# ---------------------------------------------------------------------------------------------------
# Teacher -> student

LINEARS = ("q", "k", "v", "o", "up", "down")


def linear_shapes(cfg):
    """{linear name: (out_factors, in_factors)} of one block."""
    df, ff = cfg.d_factors, cfg.ff_factors
    return {"q": (df, df), "k": (df, df), "v": (df, df), "o": (df, df), "up": (ff, df), "down": (df, ff)}


def load_teacher(path, device="cpu"):
    """(model, vocab, description) from a .qtf or a train.py checkpoint (ckpt.pt)."""
    if path.endswith(".qtf"):
        model, meta = load_qtf(path)
        vocab = meta["tokenizer.tokens"]
    else:
        ck = torch.load(path, map_location="cpu")
        model = QTensorFormer(Config(**ck["config"]))
        model.load_state_dict(ck["model"])
        vocab = ck["tokens"]
    if model.cfg.tensorized:
        raise SystemExit("teacher %s is already tensorized; compress.py takes a dense model" % path)
    return model.to(device).eval(), vocab, {"file": os.path.basename(path), "sha256": data.sha256_file(path)}


def student_config(teacher_cfg, quantum, d_factors=None, ff_factors=None, r_min=2, theta=0.5, n_qubits=4,
                   n_qlayers=2, daruan_depth=3):
    d = teacher_cfg.to_dict()
    d.update(tensorized=1, d_factors=d_factors or factorize(teacher_cfg.d_model),
             ff_factors=ff_factors or factorize(teacher_cfg.d_ff), dropout=0.0)
    if quantum:
        d.update(n_qubits=n_qubits, n_qlayers=n_qlayers, adaptive_rank=1, quantum_attention=1,
                 activation="daruan", daruan_depth=daruan_depth, r_min=r_min, theta=theta)
    else:
        d.update(n_qubits=0, adaptive_rank=0, quantum_attention=0, activation="gelu")
    return Config(**d)


def non_core_block_params(cfg):
    """Block parameters that are not TT cores (LN, biases, quantum parts), from a rank-1 model."""
    m = QTensorFormer(Config(**{**cfg.to_dict(), "tt_rank": 1}))
    cores = sum(c.numel() for blk in m.blocks for n in LINEARS for c in getattr(blk, n).cores)
    return m.param_counts()[1] - cores


def compress_model(teacher, cfg, ranks=None, ratio=None, budget=None, max_error=None, uniform=True,
                   max_rank=64, log=print):
    """TT-SVD of every block linear of the dense teacher into a student of config cfg (tensorized).

    Exactly one of ranks ({(layer, name): rank}), ratio (teacher block params / student block params),
    budget (student block params) or max_error (per-matrix relative Frobenius error). Returns
    (student, report) with report["errors"][layer.name] = {rank: rel error} and the chosen ranks.
    Everything except the linears (embeddings, LN, biases) is copied from the teacher."""
    tcfg = teacher.cfg
    shapes = linear_shapes(cfg)
    weights, errors, meta = {}, {}, {}
    for l, blk in enumerate(teacher.blocks):
        for n in LINEARS:
            W = getattr(blk, n).weight.detach().double().cpu()
            key = "%d.%s" % (l, n)
            weights[key] = W
            of, inf = shapes[n]
            errors[key] = tt_errors(W, of, inf, max_rank)
            meta[key] = (of, inf, W.norm().item())
    teacher_block = teacher.param_counts()[1]
    if ranks is None:
        if max_error is not None:
            ranks = {k: min([r for r, e in errors[k].items() if e <= max_error] or [max(errors[k])]) for k in errors}
        else:
            if budget is None:
                budget = teacher_block / ratio
            core_budget = budget - non_core_block_params(cfg)
            if core_budget <= 0:
                raise ValueError("budget %d is below the %d non-core block parameters of this config" % (
                    budget, non_core_block_params(cfg)))
            ranks = allocate_ranks(errors, meta, core_budget, uniform)
    else:
        ranks = {("%d.%s" % k if isinstance(k, tuple) else k): v for k, v in ranks.items()}
    top = max(ranks.values())
    cfg = Config(**{**cfg.to_dict(), "tt_rank": top, "r_max": top})
    student = QTensorFormer(cfg)
    with torch.no_grad():
        student.tok_emb.weight.copy_(teacher.tok_emb.weight)
        student.pos_emb.weight.copy_(teacher.pos_emb.weight)
        student.lnf.load_state_dict(teacher.lnf.state_dict())
        if not cfg.tied_embeddings:
            student.head.copy_(teacher.head)
        for l, (sb, tb) in enumerate(zip(student.blocks, teacher.blocks)):
            sb.ln1.load_state_dict(tb.ln1.state_dict())
            sb.ln2.load_state_dict(tb.ln2.state_dict())
            for n in LINEARS:
                key = "%d.%s" % (l, n)
                lin = tt_svd_linear(weights[key], shapes[n], ranks[key], getattr(tb, n).bias.detach())
                setattr(sb, n, lin.to(student.tok_emb.weight.dtype))
    block = student.param_counts()[1]
    report = {"teacher_block_params": teacher_block, "student_block_params": block,
              "block_ratio": teacher_block / block, "ranks": ranks,
              "errors": {k: {str(r): round(e, 5) for r, e in v.items()} for k, v in errors.items()},
              "chosen_errors": {k: round(errors[k][ranks[k]], 5) for k in ranks}}
    log("TT-SVD: %d -> %d block parameters (%.2fx); ranks %s" % (
        teacher_block, block, teacher_block / block, " ".join("%s:%d" % kv for kv in ranks.items())))
    log("relative Frobenius error per matrix at its rank: %s" % " ".join(
        "%s:%.3f" % (k, e) for k, e in report["chosen_errors"].items()))
    return student, report


# ---------------------------------------------------------------------------------------------------
# Quantum parts, initialised near the teacher

def fit_daruan_to_gelu(depth, lo=-4.0, hi=4.0, tries=8, seed=0):
    """Parameters (theta, w, b, a, e, s) of a one-channel DARUAN that approximates GELU on [lo, hi];
    returns (params dict, max abs error)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(lo, hi, 801, dtype=torch.float64)[:, None]
    target = F.gelu(x)
    best = None
    for t in range(tries):
        act = Daruan(1, depth).double()
        with torch.no_grad():
            act.theta.copy_((torch.rand(act.theta.shape, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi)
            act.w.copy_(0.2 + 0.6 * torch.rand(act.w.shape, generator=gen, dtype=torch.float64))
            act.a.fill_(0.1)
            act.s.fill_(1.0)
        opt = torch.optim.LBFGS(act.parameters(), lr=0.5, max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = ((act(x) - target) ** 2).mean()
            loss.backward()
            return loss
        try:
            opt.step(closure)
        except RuntimeError:
            continue
        with torch.no_grad():
            err = (act(x) - target).abs().max().item()
        if math.isfinite(err) and (best is None or err < best[1]):
            best = ({n: p.detach().clone() for n, p in act.named_parameters()}, err)
    return best


def init_quantum_parts(student, calib_tokens, route_share=0.2, candidates=64, seed=0, log=print):
    """Initialises the quantum parts of a TT-SVD student so it starts close to its teacher.

    - qout = 0: the enriched input e equals a (the encoder adds nothing at first);
    - DARUAN fitted to GELU (every channel the same fit; the teacher used GELU);
    - per layer, the encoder circuit (qparams and the scale of W_enc) is the candidate with the highest
      mean entropy on calib_tokens, so most tokens run near r_max (the TT-SVD's full rank);
    - theta = the (1 - route_share) quantile of h, so route_share of the tokens take the quantum kernel."""
    cfg = student.cfg
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if cfg.activation == "daruan":
            params, err = fit_daruan_to_gelu(cfg.daruan_depth, seed=seed)
            log("DARUAN fitted to GELU on [-4, 4]: max error %.4f" % err)
            for blk in student.blocks:
                for n, p in blk.act.named_parameters():
                    p.copy_(params[n].to(p.dtype).expand_as(p))
        for blk in student.blocks:
            blk.qout.weight.zero_()
            blk.qout.bias.zero_()
        student.eval()
        x = student.tok_emb(calib_tokens) + student.pos_emb(torch.arange(calib_tokens.shape[1]))
        hs = []
        for l, blk in enumerate(student.blocks):
            a = blk.ln1(x)
            best = None
            W0 = torch.randn(blk.enc.weight.shape, generator=gen) / math.sqrt(cfg.d_model)
            for c in range(candidates):
                scale = [0.5, 1.0, 2.0, 4.0][c % 4]
                qp = (torch.rand(blk.qparams.shape, generator=gen) * 2 - 1) * math.pi
                u = torch.tanh(F.linear(a, W0 * scale, blk.enc.bias * 0))
                from model import encoder_circuit
                _, S = encoder_circuit(u.double(), qp.double(), cfg.n_qubits)
                score = S.mean().item()
                if best is None or score > best[0]:
                    best = (score, scale, qp, S)
            blk.enc.weight.copy_(W0 * best[1])
            blk.enc.bias.zero_()
            blk.qparams.copy_(best[2])
            hs.append((best[3] / (cfg.n_qubits / 2)).reshape(-1))
            x, _ = blk(x)
        h = torch.cat(hs).float()
        theta = float(torch.quantile(h, 1 - route_share)) if route_share > 0 else 1.0
        student.cfg.theta = min(max(theta, 0.0), 1.0)
        for blk in student.blocks:
            blk.cfg.theta = student.cfg.theta
        log("quantum parts: mean entropy per layer %s bits, theta %.3f" % (
            " ".join("%.2f" % (hh.mean().item() * cfg.n_qubits / 2) for hh in hs), student.cfg.theta))
    student.train()
    return student


# ---------------------------------------------------------------------------------------------------
# Healing

def distill(student, teacher, batches, steps, lr=1e-3, min_lr=5e-5, warmup=50, weight_decay=0.1, kl_weight=1.0,
            ce_weight=1.0, temperature=1.0, clip=1.0, router_penalty=1.0, router_target=0.2, time_budget_s=None,
            evaluate=None, eval_every=200, log=print, progress_desc="heal"):
    """Fine-tunes `student` with KL(teacher || student) * kl_weight + CE * ce_weight.

    teacher: a callable tokens -> logits (run under no_grad here); student: a module whose forward returns
    logits or (logits, stats) (QTensorFormer). batches: a callable () -> (x, y). evaluate: optional
    callable () -> val loss; the best-scoring weights are restored at the end. Returns a log (list)."""
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
    t0, history, best = time.time(), [], {"val": float("inf"), "state": None, "step": 0}
    budget = time_budget_s or float("inf")

    def validate(step):
        if evaluate is None:
            return
        vl = evaluate()
        history.append({"step": step, "val_loss": vl, "time_s": round(time.time() - t0, 1)})
        log("step %5d  val %.4f" % (step, vl))
        if vl < best["val"]:
            best.update(val=vl, step=step, state={k: v.detach().clone() for k, v in student.state_dict().items()})

    validate(0)
    bar = trainlib.progress(steps, progress_desc)
    student.train()
    step, tick = 0, time.time()
    while step < steps and time.time() - t0 < budget:
        progress = min(1.0, max(step / steps, (time.time() - t0) / budget))
        cur = lr * (step + 1) / warmup if step < warmup else min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = cur
        x, y = batches()
        with torch.no_grad():
            t_logits = teacher(x)
        out = student(x)
        logits, stats = out if isinstance(out, tuple) else (out, [])
        V = logits.shape[-1]
        ce = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        kl = F.kl_div(F.log_softmax(logits.reshape(-1, V) / temperature, -1),
                      F.log_softmax(t_logits.reshape(-1, V) / temperature, -1),
                      reduction="batchmean", log_target=True) * temperature ** 2
        loss = kl_weight * kl + ce_weight * ce
        gates = [s["g"].mean() for s in stats if isinstance(s, dict) and "g" in s]
        if router_penalty > 0 and gates:
            loss = loss + router_penalty * (torch.stack(gates).mean() - router_target) ** 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        step += 1
        bar.update()
        if step % 50 == 0:
            now = time.time()
            tps = 50 * x.numel() / (now - tick)
            tick = now
            bar.set_postfix_str("kl %.3f ce %.3f" % (kl.item(), ce.item()))
            log("step %5d  kl %.4f  ce %.4f  lr %.2e  %7.0f tok/s  %.0fs" % (step, kl.item(), ce.item(), cur, tps,
                                                                           now - t0))
        if eval_every and step % eval_every == 0:
            validate(step)
    bar.close()
    if not history or history[-1]["step"] != step:
        validate(step)
    if best["state"] is not None:
        student.load_state_dict(best["state"])
    return {"steps_run": step, "best_step": best["step"], "best_val": best["val"], "time_s": round(time.time() - t0, 1),
            "evals": history}


# ---------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="dense teacher: .qtf or train.py's ckpt.pt")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default=None)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=float, help="teacher block params / student block params")
    g.add_argument("--budget", type=int, help="student block parameters")
    g.add_argument("--max_error", type=float, help="per-matrix relative Frobenius error")
    g.add_argument("--rank", type=int, help="one TT rank for every matrix")
    g.add_argument("--dense_student", type=int, metavar="D",
                   help="control: no TT; a dense student of width D (d_ff = 4D), random init, same distillation")
    ap.add_argument("--uniform", action="store_true", help="one rank for every matrix (the default; kept for old commands)")
    ap.add_argument("--greedy", action="store_true", help="per-matrix ranks by error per parameter (with --ratio/--budget)")
    ap.add_argument("--quantum", action="store_true", help="add encoder, adaptive rank, router, kernel attention, DARUAN")
    ap.add_argument("--d_factors", default=None, help="e.g. 4,4,8 (default: balanced factors of d_model)")
    ap.add_argument("--ff_factors", default=None)
    ap.add_argument("--r_min", type=int, default=2)
    ap.add_argument("--route_share", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=0, help="healing steps (0: TT-SVD only)")
    ap.add_argument("--also_unhealed", action="store_true", help="also export the TT-SVD model before healing (NAME-svd)")
    ap.add_argument("--time_budget_s", type=float, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min_lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--kl_weight", type=float, default=1.0)
    ap.add_argument("--ce_weight", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--router_penalty", type=float, default=1.0)
    ap.add_argument("--eval_every", type=int, default=200)
    ap.add_argument("--eval_iters", type=int, default=10)
    ap.add_argument("--final_eval_iters", type=int, default=50)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    ap.add_argument("--no_trim", action="store_true", help="keep TT bond components no token selected (see export.py)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
    t_start = time.time()

    teacher, vocab, tinfo = load_teacher(args.teacher)
    path = data.data_path(args.data)
    text = data.load_text(path)
    if data.char_vocab(text) != list(vocab):
        raise SystemExit("the teacher's vocabulary is not this corpus's")
    train_ids, val_ids = data.split(data.encode(text, vocab))
    ints = lambda s: [int(v) for v in s.split(",")] if s else None
    if args.dense_student:
        # Is it the TT or the teacher? The same healing from random weights into a dense model of equal size.
        cfg = Config(**{**teacher.cfg.to_dict(), "d_model": args.dense_student, "d_ff": 4 * args.dense_student,
                        "dropout": 0.0})
        student = QTensorFormer(cfg)
        report = {"teacher_block_params": teacher.param_counts()[1], "student_block_params": student.param_counts()[1],
                  "block_ratio": teacher.param_counts()[1] / student.param_counts()[1], "ranks": {}}
        args.quantum = False
    else:
        cfg = student_config(teacher.cfg, args.quantum, ints(args.d_factors), ints(args.ff_factors), args.r_min)
        ranks = None
        if args.rank is not None:
            ranks = {"%d.%s" % (l, n): args.rank for l in range(cfg.n_layers) for n in LINEARS}
        student, report = compress_model(teacher, cfg, ranks=ranks, ratio=args.ratio, budget=args.budget,
                                         max_error=args.max_error, uniform=not args.greedy)
    if args.quantum:
        student.cfg.alpha = trainlib.full_range_alpha(student.cfg)
        for blk in student.blocks:
            blk.cfg = student.cfg
        gen = torch.Generator().manual_seed(args.seed + 1)
        calib, _ = trainlib.batches(train_ids, 8, cfg.context, gen, "cpu")
        init_quantum_parts(student, calib, args.route_share, seed=args.seed)
    name = args.name or "%s-tt%s%s" % (os.path.splitext(tinfo["file"])[0], "-q" if args.quantum else "",
                                      ("-x%g" % args.ratio) if args.ratio else "")
    # per-matrix error of the run-time truncation (leading components of the stored cores)
    report["prefix_errors"] = {}
    for l, blk in enumerate(student.blocks if student.cfg.tensorized else []):
        for n in LINEARS:
            W = getattr(teacher.blocks[l], n).weight.detach()
            report["prefix_errors"]["%d.%s" % (l, n)] = {str(r): round(e, 5) for r, e in
                                                       prefix_errors(getattr(blk, n), W).items()}

    dev = args.device
    teacher.to(dev)
    student.to(dev)
    T = cfg.context
    gen = torch.Generator().manual_seed(args.seed)
    val_loss = lambda iters: trainlib.evaluate(student, val_ids, args.batch, T, iters, dev)
    heal = None
    if args.steps > 0 and args.also_unhealed:
        vl0, share0, hists0 = val_loss(args.final_eval_iters)
        prov0 = {"teacher": tinfo["file"], "teacher_sha256": tinfo["sha256"], "data_sha256": data.sha256_file(path),
                 "block_ratio": round(report["block_ratio"], 3), "heal_steps": 0, "val_loss": vl0,
                 "created_by": "tools/train/compress.py (no healing)"}
        size0 = len(export_qtf(student, os.path.join(args.out, name + "-svd.qtf"), vocab, prov0, args.dtype))
        with open(os.path.join(args.out, name + "-svd.json"), "w") as f:
            json.dump({"name": name + "-svd", "method": "tt-svd" + ("+quantum" if args.quantum else ""),
                       "val_loss": vl0, "router_share": share0, "rank_histogram_per_layer": hists0,
                       "params_total": student.param_counts()[0], "params_block": student.param_counts()[1],
                       "file_bytes": size0, "config": student.cfg.to_dict(), **report}, f, indent=1)
        print("unhealed: %s-svd val %.4f" % (name, vl0), flush=True)
    if args.steps > 0:
        heal = distill(student, lambda x: teacher(x)[0], lambda: trainlib.batches(train_ids, args.batch, T, gen, dev),
                       args.steps, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, kl_weight=args.kl_weight,
                       ce_weight=args.ce_weight, temperature=args.temperature, router_penalty=args.router_penalty,
                       time_budget_s=args.time_budget_s, evaluate=lambda: val_loss(args.eval_iters)[0],
                       eval_every=args.eval_every, progress_desc=name)
    vl, vshare, hists = val_loss(args.final_eval_iters)
    trimmed = {} if args.no_trim else trim_unused(student, hists)
    if trimmed:
        print("trimmed unused TT bond components: %s" % describe_trim(trimmed), flush=True)
    teacher_vl = trainlib.evaluate(teacher, val_ids, args.batch, T, args.final_eval_iters, dev)[0]
    device_name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    steps = heal["best_step"] if heal else 0
    provenance = {"teacher": tinfo["file"], "teacher_sha256": tinfo["sha256"], "data_sha256": data.sha256_file(path),
                  "block_ratio": round(report["block_ratio"], 3), "heal_steps": steps,
                  "heal_tokens": steps * args.batch * T, "val_loss": vl,
                  **({"trimmed": describe_trim(trimmed)} if trimmed else {}),
                  "created_by": "tools/train/compress.py (torch %s, %s)" % (torch.__version__, device_name)}
    qtf = os.path.join(args.out, name + ".qtf")
    size = len(export_qtf(student.cpu(), qtf, vocab, provenance, args.dtype))
    total, block = student.param_counts()
    method = "dense+distill" if args.dense_student else "tt-svd" + ("+distill" if heal else "") + ("+quantum" if args.quantum else "")
    summary = {"name": name, "method": method,
               "teacher": tinfo, "teacher_val_loss": teacher_vl, "val_loss": vl, "val_ppl": math.exp(vl),
               "router_share": vshare, "rank_histogram_per_layer": hists, "params_total": total,
               "params_block": block, "file": os.path.basename(qtf), "file_bytes": size, "batch": args.batch,
               "heal": heal, "heal_tokens": steps * args.batch * T, "trimmed": describe_trim(trimmed), "config": student.cfg.to_dict(),
               "device": device_name, "torch": torch.__version__, "wall_s": round(time.time() - t_start, 1), **report}
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("final: %s val %.4f (teacher %.4f, %+.1f%%), %d block params (%.2fx), ranks %s -> %s (%d bytes)" % (
        name, vl, teacher_vl, 100 * (vl / teacher_vl - 1), block, report["block_ratio"],
        trainlib.format_histograms(hists), qtf, size), flush=True)


if __name__ == "__main__":
    main()
