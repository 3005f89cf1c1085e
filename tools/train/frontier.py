"""The compression frontier (issue 16) from the run summaries in models/logs/frontier/: a CSV, an SVG
(validation loss from `qtf eval` versus block parameters, one marker per method) and a markdown table.

    /usr/bin/python3 tools/train/frontier.py [--dir models/logs/frontier] [--svg docs/img/compression-frontier.svg]

    /usr/bin/python3 tools/train/frontier.py --dir models/logs/scale --svg docs/img/compression-scale.svg

Run names: teacher; scratch-{c,q}-xN (a: TT from scratch, train.py); svd-{cu,q,cg}-xN (b: TT-SVD, no
healing); heal-{cu,q,cg}-xN (c: TT-SVD + distillation, compress.py); dense-xN (d: dense of equal block
size, same 1,500 steps) and dense-long[-do]-xN (d, trained for a wall-clock budget instead; -do: dropout
0.1); distill-dense-xN (d': a dense student of equal size from random init, the same distillation as (c):
is it the TT-SVD start or the teacher?). c = classical TT (GELU, fixed rank), q = with the quantum parts
(encoder, adaptive rank, router, kernel attention, DARUAN), cu/cg = uniform / greedy rank allocation.
The scale runs (models/logs/scale) carry "-s" after the method (teacher-s, heal-s-x8) and heal-s-r8 is
"rank 8" (its ratio is read from the summary). Losses are the engine's (`qtf eval`), over the whole
validation split, or over its first N tokens where the eval says so (the scale runs: column `scored`).
"""
import argparse
import csv
import glob
import json
import math
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

METHODS = [  # key, label, colour, marker
    ("teacher", "dense teacher", "#000000", "star"),
    ("scratch", "(a) TT from scratch", "#1f77b4", "circle"),
    ("svd", "(b) TT-SVD, no healing", "#7f7f7f", "x"),
    ("heal", "(c) TT-SVD + distillation", "#d62728", "square"),
    ("dense", "(d) dense, equal size, same tokens", "#2ca02c", "triangle"),
    ("dense-long", "(d) dense, equal size, trained longer", "#9467bd", "diamond"),
    ("distill-dense", "(d') dense, equal size, distilled", "#8c564b", "plus"),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def rows(folder):
    out = []
    teacher_json = sorted(glob.glob(os.path.join(folder, "teacher*.json")))
    teacher_block = load([p for p in teacher_json if not p.endswith(".eval.json")][0])["params_block"]
    for path in sorted(glob.glob(os.path.join(folder, "*.eval.json"))):
        name = os.path.basename(path)[:-len(".eval.json")]
        m = re.match(r"^(teacher|scratch|svd|heal|dense-long|distill-dense|dense)(?:-s)?(?:-(c|q|cu|cg|do))?"
                     r"(?:-(x|r)(\d+))?$", name)
        if not m:
            continue
        method, variant, kind, target = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        ev, summary = load(path), load(os.path.join(folder, name + ".json"))
        if kind == "r":  # a fixed rank: report the ratio it came to
            target = str(round(teacher_block / summary["params_block"]))
        if method in ("dense", "dense-long", "distill-dense", "teacher"):
            variant = "dense-do" if variant == "do" else "dense"
        heal = summary.get("heal") or {}
        tokens = summary.get("tokens_seen", summary.get("heal_tokens", 0))
        steps = summary.get("steps", heal.get("best_step", 0))
        classical = os.path.join(folder, name + ".classical.json")
        route_off = load(classical)["loss"] if os.path.exists(classical) else None
        hist = ev.get("rank_hist") or []
        used = sorted({r for h in hist for r, c in enumerate(h) if c})
        out.append({
            "name": name, "method": method, "scored": ev["scored"], "variant": variant, "quantum": int(variant == "q"),
            "target_ratio": int(target) if target else 1, "params_block": summary["params_block"],
            "block_ratio": round(teacher_block / summary["params_block"], 2), "params_total": summary["params_total"],
            "file_bytes": summary.get("file_bytes", ""), "train_steps": steps, "train_tokens": tokens,
            "loss": round(ev["loss"], 4), "flops_per_token": round(ev["flops_per_token"]),
            "mean_rank": round(ev["mean_rank"], 2) if not variant.startswith("dense") else "",
            "ranks_used": "%d-%d" % (used[0], used[-1]) if used and not variant.startswith("dense") else "",
            "quantum_share": round(ev["quantum_share"], 3) if variant == "q" else "",
            "loss_route_classical": round(route_off, 4) if route_off is not None else "",
        })
    return out


def svg(rs, path, teacher_loss, title, ymax=2.60):
    W, H, L, R, T, B = 760, 470, 70, 250, 30, 55
    xs = [r["params_block"] for r in rs]
    xmin, xmax = math.log10(min(xs) / 1.4), math.log10(max(xs) * 1.4)
    ymin = math.floor(min(r["loss"] for r in rs) * 5) / 5
    X = lambda v: L + (math.log10(v) - xmin) / (xmax - xmin) * (W - L - R)
    Y = lambda v: T + (ymax - min(v, ymax)) / (ymax - ymin) * (H - T - B)
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="18" font-size="14">%s</text>' % (L, title)]
    ticks = [m * 10 ** e for e in range(3, 8) for m in (1, 2, 5)]
    for v in [t for t in ticks if xmin <= math.log10(t) <= xmax]:
        s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(v), T, X(v), H - B))
        s.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (
            X(v), H - B + 16, "%gM" % (v / 1e6) if v >= 1e6 else "%gk" % (v / 1e3)))
    y = ymin
    while y <= ymax + 1e-9:
        s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (L, Y(y), W - R, Y(y)))
        s.append('<text x="%d" y="%.1f" text-anchor="end">%.1f</text>' % (L - 6, Y(y) + 4, y))
        y += 0.2
    s.append('<text x="%d" y="%d" text-anchor="middle">parameters in blocks (log scale)</text>' % ((L + W - R) / 2, H - 12))
    s.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">val loss, nats/char</text>' % (
        (T + H - B) / 2, (T + H - B) / 2))
    s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#000" stroke-dasharray="4 3"/>' % (
        L, Y(teacher_loss * 1.03), W - R, Y(teacher_loss * 1.03)))
    s.append('<text x="%d" y="%.1f" font-size="10">teacher +3%%</text>' % (L + 4, Y(teacher_loss * 1.03) - 3))

    def marker(x, y, shape, colour, hollow):
        fill = "white" if hollow else colour
        if shape == "circle":
            return '<circle cx="%.1f" cy="%.1f" r="5" fill="%s" stroke="%s" stroke-width="1.5"/>' % (x, y, fill, colour)
        if shape == "square":
            return '<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s" stroke="%s" stroke-width="1.5"/>' % (
                x - 5, y - 5, fill, colour)
        if shape == "triangle":
            return '<polygon points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="%s" stroke="%s" stroke-width="1.5"/>' % (
                x, y - 6, x - 6, y + 5, x + 6, y + 5, fill, colour)
        if shape == "diamond":
            return '<polygon points="%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="%s" stroke="%s" stroke-width="1.5"/>' % (
                x, y - 6, x + 6, y, x, y + 6, x - 6, y, fill, colour)
        if shape == "plus":
            return '<path d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f" stroke="%s" stroke-width="3"/>' % (
                x - 6, y, x + 6, y, x, y - 6, x, y + 6, colour)
        if shape == "x":
            return '<path d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f" stroke="%s" stroke-width="2"/>' % (
                x - 5, y - 5, x + 5, y + 5, x - 5, y + 5, x + 5, y - 5, colour)
        return '<text x="%.1f" y="%.1f" text-anchor="middle" font-size="18" fill="%s">&#9733;</text>' % (x, y + 6, colour)

    style = {k: (c, m) for k, _, c, m in METHODS}
    for r in rs:
        if r["variant"] == "cg":
            continue
        c, m = style[r["method"]]
        x, y = X(r["params_block"]), Y(r["loss"])
        title = "%s: loss %.4f, %d block params, %s tokens" % (r["name"], r["loss"], r["params_block"], r["train_tokens"])
        s.append('<g><title>%s</title>%s</g>' % (title, marker(x, y, m, c, r["quantum"] == 1)))
        if r["loss"] > ymax:
            s.append('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="%s">%.1f</text>' % (x, Y(ymax) + 16, c, r["loss"]))
    ly = T + 10
    for k, label, c, m in METHODS:
        s.append(marker(W - R + 20, ly, m, c, False))
        s.append('<text x="%d" y="%d">%s</text>' % (W - R + 32, ly + 4, label))
        ly += 20
    s.append(marker(W - R + 20, ly, "circle", "#444", True))
    s.append('<text x="%d" y="%d">hollow: with quantum parts</text>' % (W - R + 32, ly + 4))
    s.append('<text x="%d" y="%d" font-size="10">(b) points above %.1f are drawn</text>' % (W - R + 12, ly + 26, ymax))
    s.append('<text x="%d" y="%d" font-size="10">at the top with their loss</text>' % (W - R + 12, ly + 40))
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "models", "logs", "frontier"))
    ap.add_argument("--csv", default=None, help="default: DIR/frontier.csv")
    ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "img", "compression-frontier.svg"))
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    rs = rows(args.dir)
    order = {k: i for i, (k, *_) in enumerate(METHODS)}
    rs.sort(key=lambda r: (r["target_ratio"], order[r["method"]], r["variant"]))
    with open(args.csv or os.path.join(args.dir, "frontier.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rs[0].keys()))
        w.writeheader()
        w.writerows(rs)
    teacher = next(r for r in rs if r["method"] == "teacher")
    scored = sorted({r["scored"] for r in rs})
    what = "whole validation split" if len(scored) == 1 and scored[0] > 100000 else "first %s validation tokens" % (
        "/".join(format(v, ",") for v in scored))
    svg(rs, args.svg, teacher["loss"], args.title or "Compression frontier: loss (qtf eval, %s) vs block parameters" % what)
    print("| target | method | variant | block params (ratio) | tokens | val loss | vs teacher | FLOPs/token | ranks used | route off |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rs:
        print("| %s | %s | %s | %s (%.2fx) | %s | %.4f | %+.1f%% | %s | %s | %s |" % (
            "%dx" % r["target_ratio"] if r["method"] != "teacher" else "-", dict((k, l) for k, l, *_ in METHODS)[r["method"]],
            {"": "classical", "c": "classical", "cu": "classical", "cg": "classical, greedy ranks", "q": "quantum", "dense": "dense",
             "dense-do": "dense, dropout 0.1"}[r["variant"]],
            format(r["params_block"], ","), r["block_ratio"], "%.1fM" % (r["train_tokens"] / 1e6) if r["train_tokens"] else "0",
            r["loss"], 100 * (r["loss"] / teacher["loss"] - 1), format(r["flops_per_token"], ","), r["ranks_used"] or "-",
            ("%.4f" % r["loss_route_classical"]) if r["loss_route_classical"] != "" else "-"))


if __name__ == "__main__":
    main()
