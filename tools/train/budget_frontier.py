"""The byte-budget frontier of budget.py, measured by the engine (docs/llama.md "Compression under a byte
budget"): for one model, files at fractions of its f32 file for each family (quant: per-tensor types in a
dense file; tt: the low-rank TT file with quantised cores; mix: the one of the two with the lower KL on the
set-aside healing stories), plus `qtf quantize` f16/q8/q4/q3 of the whole model, each scored on held-out
stories the compressor never saw:

    python3 tools/train/budget_frontier.py run --model models/stories260k.qtf --name stories260k --dir D \
        [--budgets 1/16,1/8,1/4,1/2] [--heal-seconds 45] [--heal 1-300] [--heldout 301-500] [--families quant,tt]
        [--device cpu|cuda] [--rounding best|rtn|imatrix|gptq] [--learn-scales] [--sens-cache S.json]
    python3 tools/train/budget_frontier.py plan --model M --budgets B,B,... [--sens-cache S.json]  # choice, predicted KL
    python3 tools/train/budget_frontier.py speed --dir D [--rounds 3 --cpu 1]   # tg again, interleaved, pinned
    python3 tools/train/budget_frontier.py report --dir D --md D/frontier.md --svg docs/img/budget-frontier.svg

Per file: `qtf eval -f HELDOUT --max-tokens 0 --doc-sep "<|endoftext|>" --json` (loss, nats/token), KL(original
|| file) and greedy agreement on the first --kl-windows windows of 256 held-out tokens (the engine's logits
through python/qtf, one token at a time), `qtf bench -p 0 -n 128 -r 5 -o json` (tg tok/s, one thread) and the
file's bytes.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import budget  # noqa: E402

UNIFORM = ("f16", "q8", "q4", "q3")  # the `qtf quantize --type` files measured beside the budgets
TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "real",
                    "tinystories-valid-1-500.txt")


def heldout_file(text, spec, path, plain=0):
    """The held-out stories as they are in the text (each followed by the separator), for qtf eval; with
    plain (budget.read_stories), the held-out pieces back to back."""
    if plain:
        pieces = budget.read_stories(text, spec, plain)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(pieces))
        return pieces
    raw = open(text, encoding="utf-8").read()
    parts = [p for p in raw.split(budget.DOC_SEP) if p.strip()]
    lo, hi = budget.parse_range(spec, len(parts))
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(p + budget.DOC_SEP for p in parts[lo:hi]))
    return [p.strip() for p in parts[lo:hi]]


def engine_logprobs(binding, path, x):
    """log-softmax of the engine's logits at every position of windows x [n, T] (each from an empty cache),
    of the file as stored: no dense copies of its TT linears (execution by cost's int8 copies would add their
    own rounding; the speed figures below run the default, as a user would)."""
    m = binding.Model(path)
    out = np.zeros((x.shape[0], x.shape[1], m.vocab_size), dtype=np.float32)
    for i in range(x.shape[0]):
        ctx = m.context(n_ctx=x.shape[1], mem_budget=0)
        for j in range(x.shape[1]):
            ctx.decode([int(x[i, j])])
            out[i, j] = ctx.log_softmax()
        ctx.close()
    m.close()
    return out


def measure(qtf, binding, path, heldout_txt, x, t_lp):
    r = subprocess.run([qtf, "eval", "-m", path, "-f", heldout_txt, "--max-tokens", "0", "--doc-sep", budget.DOC_SEP,
                        "--mem-budget", "0", "--act-quant", "off", "--json"], capture_output=True, text=True, check=True)
    ev = json.loads(r.stdout)
    lp = engine_logprobs(binding, path, x)
    kl = float((np.exp(t_lp) * (t_lp - lp)).sum(-1).mean())
    agree = float((t_lp.argmax(-1) == lp.argmax(-1)).mean())
    b = subprocess.run([qtf, "bench", "-m", path, "-p", "0", "-n", "128", "-r", "5", "-o", "json"],
                       capture_output=True, text=True, check=True)
    bj = json.loads(b.stdout)[0]
    return {"file": path, "bytes": os.path.getsize(path), "heldout_loss": ev["loss"], "heldout_scored": ev["scored"],
            "kl": kl, "agreement": agree, "kl_positions": int(x.size), "tg_tok_s": bj["avg_ts"],
            "tg_stddev": bj["stddev_ts"], "peak_rss_kib": bj.get("peak_rss_kib"), "arena_bytes": bj.get("arena_bytes")}


def provenance(budget_bytes, fam):
    return budget.provenance("tools/train/budget_frontier.py", budget_bytes, fam)


TABLES = {"tok_emb": "emb", "pos_emb": "pos"}  # the lookup tables, named on their own in a summary


def summary(choice):
    """'emb q4; 20 q8, 15 q4' / 'emb q8; q,o i8; 25 low-rank i8 (r 8-32)'."""
    parts, counts, ranks = [], {}, []
    for name, o in choice.items():
        if name in TABLES:
            parts.append(TABLES[name] + " " + o["dtype"] +
                         (" " + o["rounding"] if o.get("rounding", "rtn") != "rtn" else ""))
            continue
        if o["kind"] == "tt" and not (name.endswith("attn.q") or name.endswith("attn.o")):
            ranks.append(o["rank"])
            key = "low-rank " + o["dtype"]
        else:
            key = (o["dtype"] + (" " + o["rounding"] if o.get("rounding", "rtn") != "rtn" else "") if o["kind"] == "quant"
                   else "q/o " + o["dtype"])
        counts[key] = counts.get(key, 0) + 1
    parts += ["%d %s" % (v, k) for k, v in sorted(counts.items())]
    if ranks:
        parts.append("ranks %d-%d (mean %.0f)" % (min(ranks), max(ranks), np.mean(ranks)))
    return "; ".join(parts)


def plan(args):
    """What the knapsack would choose at each budget, and its predicted KL (the sum of the chosen options'
    measured KLs): no healing, no file. Answers "what would N more bytes buy" before a run."""
    s = budget.Session(args.model, args.text, args.heal, args.qtf, args.tokenizer, samples=0, log=lambda *_: None,
                       calib_windows=args.calib_windows, drop_unknown=True, plain=args.plain_text,
                       rounding=args.rounding, sens_cache=args.sens_cache, kinds=args.kinds)
    mats, fixed = s.family(args.family)
    print("%s, family %s: %d matrices; fixed part %d bytes (provenance room included)" % (
        args.model, args.family, len(mats), fixed))
    for spec in args.budgets.split(","):
        b = budget.parse_budget(spec, s.f32_bytes)
        p = s.plan(args.family, b)
        if p is None:
            print("%d bytes: below the smallest file (%d)" % (b, s.smallest(args.family)))
            continue
        chosen, choice, predicted, _ = p
        kinds = {}
        for m, j in zip(chosen, choice):
            kinds[m.options[j]["dtype"]] = kinds.get(m.options[j]["dtype"], 0) + 1
        print("%d bytes: predicted KL %.4f  %s" % (b, predicted, ", ".join(
            "%d %s" % (n, k) for k, n in sorted(kinds.items(), key=lambda t: -t[1]))), flush=True)


def run(args):
    out = os.path.join(args.dir, args.name)
    os.makedirs(out, exist_ok=True)
    log_f = open(os.path.join(out, "log.txt"), "a")

    def log(msg):
        line = "[%s] %s" % (time.strftime("%H:%M:%S"), msg)
        print(line, flush=True)
        log_f.write(line + "\n")
        log_f.flush()

    s = budget.Session(args.model, args.text, args.heal, args.qtf, args.tokenizer, samples=args.samples, log=log,
                       calib_windows=args.calib_windows, drop_unknown=True, plain=args.plain_text, device=args.device,
                       rounding=args.rounding, sens_cache=args.sens_cache, learn_scales=args.learn_scales,
                       kinds=args.kinds)
    held_txt = os.path.join(out, "heldout.txt")
    held = heldout_file(args.text, args.heldout, held_txt, args.plain_text)
    ids = budget.encode_stories(s.qtf, s.qtf_path, s.meta, held, s.workdir, s.binding, drop_unknown=True, log=log)
    x = budget.windows(ids, 256)[:args.kl_windows].numpy()
    t_lp = engine_logprobs(s.binding, s.qtf_path, x)
    res_path = os.path.join(out, "results.json")
    res = json.load(open(res_path)) if os.path.exists(res_path) else {}
    res.update({"model": args.model, "name": args.name, "f32_bytes": s.f32_bytes, "heal_stories": args.heal,
                "heldout_stories": args.heldout, "plain_text": args.plain_text,
                "text": os.path.relpath(args.text, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")),
                "heal_seconds": args.heal_seconds, "heal_lr": args.heal_lr, "heal_batch": args.heal_batch, "heal_ce": args.heal_ce, "refine": args.refine,
                "kinds": list(args.kinds or budget.QUANT_KINDS), "samples": args.samples, "rounding": args.rounding, "learn_scales": args.learn_scales,
                "points": res.get("points", [])})
    done = {(p["family"], p.get("fraction")) for p in res["points"]}

    def add(point):
        res["points"] = [p for p in res["points"] if (p["family"], p.get("fraction")) != (point["family"], point.get("fraction"))]
        res["points"].append(point)
        with open(res_path, "w") as f:
            json.dump(res, f, indent=1)

    if ("original", None) not in done:
        add(dict(measure(s.qtf, s.binding, s.qtf_path, held_txt, x, t_lp), family="original"))
    for t in UNIFORM:
        if ("uniform " + t, None) in done:
            continue
        p = os.path.join(out, "uniform-%s.qtf" % t)
        subprocess.run([s.qtf, "quantize", s.qtf_path, p, "--type", t], capture_output=True, check=True)
        add(dict(measure(s.qtf, s.binding, p, held_txt, x, t_lp), family="uniform " + t))
    if args.rounding != "rtn" and "quant" in args.families.split(","):
        for t in ("q4", "q3"):  # the same uniform files with this rounding (unhealed; embedding/head q8 as above)
            fam = "uniform %s %s" % (t, "gptq" if args.rounding == "best" else args.rounding)
            if (fam, None) in done:
                continue
            p = os.path.join(out, "uniform-%s-%s.qtf" % (t, args.rounding))
            student, mats, choice = s.uniform(t)
            s.write(student, mats, choice, "quant", p, 1 << 40, provenance(0, "quant"))
            add(dict(measure(s.qtf, s.binding, p, held_txt, x, t_lp), family=fam))
    if "quant" in args.families.split(","):  # each option's KL, as measured for the knapsack
        mats, _ = s.family("quant")
        res["sensitivity"] = {m.name: {budget.option_label(o): o["loss"] for o in m.options} for m in mats}
    for frac in args.budgets.split(","):
        b = budget.parse_budget(frac, s.f32_bytes)
        fam_points = {}
        for fam in args.families.split(","):
            path = os.path.join(out, "%s-%s.qtf" % (fam, frac.replace("/", "_")))
            r = s.run(fam, b, args.heal_seconds, args.heal_steps, args.seed, args.heal_lr, args.heal_batch, args.heal_ce,
                      args.refine)
            if r is None:
                log("%s at %s (%d bytes): below the smallest %s file (%d bytes)" % (fam, frac, b, fam, s.smallest(fam)))
                add({"family": fam, "fraction": frac, "budget": b, "infeasible": True, "smallest": s.smallest(fam)})
                continue
            student, mats, choice, rep = r
            rep["val_kl"] = budget.kl_to(student, s.val_x, s.val_lp)[0]
            s.write(student, mats, choice, fam, path, b, provenance(b, fam))
            m = measure(s.qtf, s.binding, path, held_txt, x, t_lp)
            point = dict(m, family=fam, fraction=frac, budget=b, predicted_kl=rep["predicted_kl"],
                         calib_kl_unhealed=rep["calib_kl_unhealed"], val_kl=rep["val_kl"], heal=rep["heal"],
                         summary=summary(rep["choice"]), choice=rep["choice"])
            log("%s at %s: %d bytes, held-out loss %.4f, KL %.4f, agreement %.3f, tg %.0f tok/s; %s" % (
                fam, frac, m["bytes"], m["heldout_loss"], m["kl"], m["agreement"], m["tg_tok_s"], point["summary"]))
            add(point)
            fam_points[fam] = point
        if fam_points:  # the chooser: the family with the lower KL on the set-aside healing stories
            best = min(fam_points.values(), key=lambda p: p["val_kl"])
            add(dict(best, family="mix", picked=best["family"]))
    log("done: %s" % res_path)


# ---------------------------------------------------------------------------------------------------

COLORS = {"quant": "#1f77b4", "tt": "#d62728", "mix": "#2ca02c", "uniform": "#7f7f7f"}


def svg(results, path):
    W, H, pad = 460, 330, 58
    panels = []
    for k, res in enumerate(results):
        orig = next(p for p in res["points"] if p["family"] == "original")
        pts = [p for p in res["points"] if not p.get("infeasible") and p["family"] != "original"]
        ys = [p["heldout_loss"] - orig["heldout_loss"] for p in pts]
        x0, x1 = np.log2(1 / 16) - 0.3, np.log2(1.0) + 0.1
        ly0, ly1 = -4.0, np.log10(max(ys + [1.0])) + 0.2  # the loss increase on a log scale, 1e-4 at the floor
        ox = k * (W + 20)

        def X(v):
            return ox + pad + (np.log2(v) - x0) / (x1 - x0) * (W - pad - 15)

        def Y(v):
            return 20 + (1 - (np.log10(max(v, 1e-4)) - ly0) / (ly1 - ly0)) * (H - pad - 20)

        g = ['<text x="%d" y="14" font-size="13" font-weight="bold">%s (f32 file %s bytes)</text>' % (
            ox + pad, res["name"], format(res["f32_bytes"], ","))]
        g.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>' % (X(2 ** x0), Y(0), X(1), Y(0)))
        g.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>' % (X(2 ** x0), Y(0), X(2 ** x0), Y(10 ** ly1)))
        for f in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1):
            g.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>' % (X(f), Y(0), X(f), Y(10 ** ly1)))
            g.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>' % (
                X(f), Y(0) + 13, "1" if f == 1 else "1/%d" % round(1 / f)))
        for e in range(-4, int(np.floor(ly1)) + 1):
            t = 10.0 ** e
            g.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>' % (
                X(2 ** x0) - 4, Y(t) + 3, "&lt;1e-4" if e == -4 else "%g" % t))
        g.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="3,3"/>' % (
            X(2 ** x0), Y(0.05), X(1), Y(0.05)))
        g.append('<text x="%.1f" y="%.1f" font-size="9" fill="#666">+0.05 nats</text>' % (X(1) - 50, Y(0.05) - 3))
        g.append('<text x="%.1f" y="%d" font-size="11" text-anchor="middle">file bytes / f32 file (log scale)</text>' % (
            ox + pad + (W - pad) / 2, H - 18))
        g.append('<text x="%d" y="%d" font-size="11" transform="rotate(-90 %d %d)" text-anchor="middle">held-out loss '
                 '- original (nats/token, log)</text>' % (ox + 14, H / 2, ox + 14, H / 2))
        for fam in ("quant", "tt", "mix"):
            fp = sorted([p for p in pts if p["family"] == fam], key=lambda p: p["bytes"])
            if not fp:
                continue
            c = COLORS[fam]
            dash = ' stroke-dasharray="6,3"' if fam == "mix" else ""
            g.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>' % (c, dash, " ".join(
                "%.1f,%.1f" % (X(p["bytes"] / res["f32_bytes"]), Y(p["heldout_loss"] - orig["heldout_loss"])) for p in fp)))
            for p in fp:
                g.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (
                    X(p["bytes"] / res["f32_bytes"]), Y(p["heldout_loss"] - orig["heldout_loss"]), c))
        for p in pts:
            if p["family"].startswith("uniform"):
                cx, cy = X(p["bytes"] / res["f32_bytes"]), Y(p["heldout_loss"] - orig["heldout_loss"])
                g.append('<rect x="%.1f" y="%.1f" width="6" height="6" fill="%s"/>' % (cx - 3, cy - 3, COLORS["uniform"]))
                g.append('<text x="%.1f" y="%.1f" font-size="9">%s</text>' % (cx + 5, cy - 4, p["family"].split()[1]))
        panels.append("\n".join(g))
    legend = []
    for i, (fam, label) in enumerate((("quant", "quantisation only (per-tensor types)"), ("tt", "low-rank TT + quantised cores"),
                                      ("mix", "the chooser"), ("uniform", "qtf quantize, whole model"))):
        legend.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" font-size="11">%s</text>' % (
            60 + i * 230, H + 2, COLORS[fam], 74 + i * 230, H + 11, label))
    total_w = len(results) * (W + 20)
    with open(path, "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">\n'
                '<rect width="100%%" height="100%%" fill="white"/>\n%s\n%s\n</svg>\n' % (
                    total_w, H + 20, "\n".join(panels), "\n".join(legend)))


def table(res):
    orig = next(p for p in res["points"] if p["family"] == "original")
    rows = ["| budget | family | file bytes (of f32) | held-out loss (vs original) | KL | greedy agreement | tg tok/s | "
            "peak RSS MiB | what the chooser picked |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]

    def row(p, b):
        if p.get("infeasible"):
            return "| %s | %s | below the smallest file (%s) | | | | | | |" % (b, p["family"], format(p["smallest"], ","))
        return "| %s | %s | %s (%.1f%%) | %.4f (%+.4f) | %.4f | %.3f | %s | %s | %s |" % (
            b, p["family"] + (" = " + p["picked"] if p.get("picked") else ""), format(p["bytes"], ","),
            100.0 * p["bytes"] / res["f32_bytes"], p["heldout_loss"], p["heldout_loss"] - orig["heldout_loss"], p["kl"],
            p["agreement"], format(round(p["tg_tok_s"]), ","),
            "%.1f" % (p["peak_rss_kib"] / 1024) if p.get("peak_rss_kib") else "", p.get("summary", ""))

    rows.append(row(orig, "f32") .replace("| f32 | original |", "| - | original (f32) |"))
    for t in UNIFORM + tuple("%s %s" % (t, r) for t in ("q4", "q3") for r in budget.ROUNDINGS[1:]):
        p = next((q for q in res["points"] if q["family"] == "uniform " + t), None)
        if p:
            rows.append(row(p, "-"))
    fracs = sorted({(p["budget"], p["fraction"]) for p in res["points"] if p.get("fraction")})
    for b, fr in fracs:
        label = fr if "/" in fr else "half q8"
        for fam in ("quant", "tt", "mix"):
            p = next((q for q in res["points"] if q["family"] == fam and q.get("fraction") == fr), None)
            if p:
                rows.append(row(p, "%s (%s)" % (label, format(b, ","))))
    return "\n".join(rows)


def report(args):
    results = []
    for name in sorted(os.listdir(args.dir)):
        p = os.path.join(args.dir, name, "results.json")
        if os.path.exists(p):
            results.append(json.load(open(p)))
    md = []
    for res in results:
        what = "%s-character pieces" % format(res["plain_text"], ",") if res.get("plain_text") else "stories"
        md.append("**%s** (f32 file %s bytes; healing %s %s, held-out %s %s)\n\n%s\n" % (
            res["name"], format(res["f32_bytes"], ","), what, res["heal_stories"], what, res["heldout_stories"], table(res)))
    text = "\n".join(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    print(text)
    if args.svg:
        svg(results, args.svg)


def speed(args):
    """tg of every file of the results again, all files interleaved over --rounds rounds, pinned to one CPU
    (`taskset -c CPU qtf bench -p 0 -n 128 -r 5`); the median replaces tg_tok_s (the first figure is kept
    as tg_first)."""
    qtf = budget.find_qtf(args.qtf)
    res = {}
    for name in sorted(os.listdir(args.dir)):
        p = os.path.join(args.dir, name, "results.json")
        if os.path.exists(p):
            res[p] = json.load(open(p))
    files = sorted({q["file"] for r in res.values() for q in r["points"] if not q.get("infeasible")})
    runs = {f: [] for f in files}
    for _ in range(args.rounds):
        for f in files:
            out = subprocess.run(["taskset", "-c", str(args.cpu), qtf, "bench", "-m", f, "-p", "0", "-n", "128", "-r", "5",
                                  "-o", "json"], capture_output=True, text=True, check=True).stdout
            runs[f].append(json.loads(out)[0]["avg_ts"])
    for path, r in res.items():
        for q in r["points"]:
            if not q.get("infeasible"):
                q.setdefault("tg_first", q["tg_tok_s"])
                q["tg_rounds"] = runs[q["file"]]
                q["tg_tok_s"] = float(np.median(runs[q["file"]]))
        with open(path, "w") as f:
            json.dump(r, f, indent=1)
    for f in files:
        print("%-60s %s" % (f, " ".join("%.0f" % v for v in runs[f])))


def rebuild(qtf, model_path, point, out):
    """The file of a frontier point again, from its recorded choice (types, ranks) without healing: the same
    tensors, types and bytes as the healed file, so the same memory and speed, other values."""
    model, meta = budget.load_reference(model_path)
    fam = point.get("picked", point["family"])
    mats = budget.matrices(model, fam)
    idx = budget.option_indices(mats, point["choice"])
    student = budget.make_student(model, mats, idx)
    return budget.write_file(qtf, model, meta, student, mats, idx, fam, out, point["budget"], provenance(point["budget"], fam))


def peak_rss(qtf, path):
    """Peak resident set (KiB) of `qtf bench -p 0 -n 128 -r 1` on the file: the mapped file's touched pages,
    the arena, the program (VmHWM, as qtf bench reports it)."""
    out = subprocess.run([qtf, "bench", "-m", path, "-p", "0", "-n", "128", "-r", "1", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["peak_rss_kib"]


def measure_rss(args):
    """Peak RSS of every point of the results: the file when it is still there, else one rebuilt from the
    point's choice (rebuild; uniform points by `qtf quantize` of the original). Writes peak_rss_kib and
    rss_file (which file was measured) into results.json."""
    qtf = budget.find_qtf(args.qtf)
    os.makedirs(args.work, exist_ok=True)
    for name in sorted(os.listdir(args.dir)):
        path = os.path.join(args.dir, name, "results.json")
        if not os.path.exists(path):
            continue
        res = json.load(open(path))
        model = budget.import_model(res["model"], qtf, args.work, None)
        made = {}
        for q in res["points"]:
            if q.get("infeasible"):
                continue
            f = q["file"]
            if not (os.path.exists(f) and os.path.getsize(f) == q["bytes"]):
                key = (q["family"] if q["family"].startswith("uniform") else q.get("picked", q["family"]), q.get("fraction"))
                f = made.get(key) or os.path.join(args.work, "%s-%s-%s.qtf" % (name, key[0].replace(" ", "-"),
                                                                                str(key[1]).replace("/", "_")))
                if key not in made:
                    if q["family"] == "original":
                        f = model
                    elif q["family"].startswith("uniform"):
                        subprocess.run([qtf, "quantize", model, f, "--type", q["family"].split()[1]], check=True,
                                       capture_output=True)
                    else:
                        rebuild(qtf, model, q, f)
                    made[key] = f
                if os.path.getsize(f) != q["bytes"]:
                    raise budget.BudgetError("%s: rebuilt %d bytes, the point had %d" % (f, os.path.getsize(f), q["bytes"]))
            q["peak_rss_kib"] = peak_rss(qtf, f)
            q["rss_file"] = f
            print("%-18s %-12s %-8s %9d bytes  peak RSS %6.0f KiB" % (name, q["family"], q.get("fraction") or "",
                                                                      q["bytes"], q["peak_rss_kib"]), flush=True)
        with open(path, "w") as fo:
            json.dump(res, fo, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--tokenizer")
    r.add_argument("--name", required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--text", default=TEXT)
    r.add_argument("--plain-text", type=int, default=0, metavar="N",
                   help="--text has no separators: N-character pieces, which --heal and --heldout number")
    r.add_argument("--heal", default="1-300")
    r.add_argument("--heldout", default="301-500")
    r.add_argument("--budgets", default="1/16,1/8,1/4,1/2")
    r.add_argument("--heal-seconds", type=float, default=45)
    r.add_argument("--families", default="quant,tt", help="which of quant, tt to run (mix: the better of those run)")
    r.add_argument("--heal-steps", type=int, default=100000)
    budget.add_heal_rate_args(r)
    budget.add_kinds_arg(r)
    r.add_argument("--device", default="cpu", help="where healing runs: cpu (default) or cuda")
    r.add_argument("--samples", type=int, default=32)
    r.add_argument("--calib-windows", type=int, default=8)
    r.add_argument("--kl-windows", type=int, default=16)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--rounding", choices=budget.ROUNDINGS, default="best", help="q4/q3 rounding (budget.py --rounding)")
    r.add_argument("--learn-scales", action="store_true", help="healing trains the block scales (budget.py)")
    r.add_argument("--sens-cache", help="JSON file of measured sensitivities, read when it has this model's, else written")
    r.add_argument("--qtf")
    pl = sub.add_parser("plan")
    pl.add_argument("--model", required=True)
    pl.add_argument("--tokenizer")
    pl.add_argument("--text", default=TEXT)
    pl.add_argument("--plain-text", type=int, default=0, metavar="N")
    pl.add_argument("--heal", default="1-300", help="the stories calibration comes from (as run's)")
    pl.add_argument("--budgets", required=True, help="bytes or fractions of the f32 file, comma-separated")
    pl.add_argument("--family", choices=["quant", "tt"], default="quant")
    pl.add_argument("--calib-windows", type=int, default=8)
    pl.add_argument("--rounding", choices=budget.ROUNDINGS, default="best")
    pl.add_argument("--sens-cache", help="JSON file of measured sensitivities (run's --sens-cache)")
    budget.add_kinds_arg(pl)
    pl.add_argument("--qtf")
    sp = sub.add_parser("speed")
    sp.add_argument("--dir", required=True)
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--cpu", type=int, default=1)
    sp.add_argument("--qtf")
    ms = sub.add_parser("measure")
    ms.add_argument("--dir", required=True)
    ms.add_argument("--work", required=True, help="where rebuilt files go")
    ms.add_argument("--qtf")
    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.add_argument("--md")
    p.add_argument("--svg")
    args = ap.parse_args(argv)
    try:
        {"run": run, "plan": plan, "speed": speed, "measure": measure_rss, "report": report}[args.cmd](args)
    except budget.BudgetError as e:
        print("budget_frontier: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
