"""Sampled attention (docs/qllm.md): loss and speed against the number of draws, measured in the engine.

    python3 bench/qllm/sampled_frontier.py --qtf build/qtf -m models/shakespeare-qllm-646k.qtf \
        -f val.txt [--samples 1,2,4,...] [--seeds 1,2] [--max-tokens 0] [--out docs/img/qllm-sampled]

For each S, `qtf eval --attn-samples S --attn-seed SEED --json` on the text (S = 0: exact softmax,
the model as trained); writes OUT.json (every run), OUT.csv and OUT.svg (bits per byte and ms per token
against S, exact softmax as a line). One thread; times are the engine's own per-token wall clock.
"""
import argparse
import json
import math
import subprocess
import sys


def run(args, S, seed):
    cmd = [args.qtf, "eval", "-m", args.model, "-f", args.file, "--max-tokens", str(args.max_tokens), "--json",
           "--attn-samples", str(S), "--attn-seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    d.update(S=S, seed=seed, command=" ".join(cmd))
    return d


def svg(rows, exact, path, title):
    W, H, pad = 720, 300, 56
    panels = [("bits per byte", "bits_per_byte"), ("ms per token (engine, 1 thread)", "time_ms_per_token")]
    Ss = sorted({r["S"] for r in rows})
    lx = lambda S, x0, w: x0 + (math.log2(S) - math.log2(Ss[0])) / max(1e-9, math.log2(Ss[-1]) - math.log2(Ss[0])) * w
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
           % (W, H), '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="16" font-size="13">%s</text>' % (pad, title)]
    pw = (W - 3 * pad) / 2
    for i, (label, key) in enumerate(panels):
        x0, y0, ph = pad + i * (pw + pad), 36, H - 36 - pad
        vals = [r[key] for r in rows] + [exact[key]]
        lo, hi = min(vals), max(vals)
        lo, hi = lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)
        ly = lambda v: y0 + ph - (v - lo) / (hi - lo) * ph
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="none" stroke="#888"/>' % (x0, y0, pw, ph))
        out.append('<text x="%.1f" y="%d">%s</text>' % (x0, y0 - 4, label))
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            out.append('<text x="%.1f" y="%.1f" text-anchor="end">%.3g</text>' % (x0 - 3, ly(v) + 4, v))
        for S in Ss:
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (lx(S, x0, pw), y0 + ph + 14, S))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">draws per head (S, log scale)</text>'
                   % (x0 + pw / 2, y0 + ph + 30))
        out.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c33" stroke-dasharray="5,3"/>'
                   % (x0, x0 + pw, ly(exact[key]), ly(exact[key])))
        out.append('<text x="%.1f" y="%.1f" fill="#c33" text-anchor="end">exact softmax</text>'
                   % (x0 + pw - 4, ly(exact[key]) - 4))
        seeds = sorted({r["seed"] for r in rows})
        for j, seed in enumerate(seeds):
            pts = sorted((r["S"], r[key]) for r in rows if r["seed"] == seed)
            colour = ["#1f5fa8", "#2a9d4a", "#8a4fb0"][j % 3]
            out.append('<polyline fill="none" stroke="%s" points="%s"/>' % (
                colour, " ".join("%.1f,%.1f" % (lx(S, x0, pw), ly(v)) for S, v in pts)))
            for S, v in pts:
                out.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (lx(S, x0, pw), ly(v), colour))
            if i == 0:
                out.append('<text x="%.1f" y="%d" fill="%s">seed %d</text>' % (x0 + pw - 60, y0 + 14 + 13 * j, colour, seed))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qtf", default="build/qtf")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-f", "--file", required=True)
    ap.add_argument("--samples", default="1,2,4,8,16,32,64,128,256,1024")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--out", default="qllm-sampled")
    args = ap.parse_args()
    exact = run(args, 0, 0)
    print("exact: %.4f bits/byte, %.4f ms/token" % (exact["bits_per_byte"], exact["time_ms_per_token"]), flush=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for S in [int(s) for s in args.samples.split(",")]:
            r = run(args, S, seed)
            rows.append(r)
            print("S %5d seed %d: %.4f bits/byte (%+.4f), %.4f ms/token, variance %.3e" % (
                S, seed, r["bits_per_byte"], r["bits_per_byte"] - exact["bits_per_byte"], r["time_ms_per_token"],
                r["sample_var"]), flush=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"exact": exact, "sampled": rows}, f, indent=1)
    with open(args.out + ".csv", "w") as f:
        f.write("S,seed,loss_nats_per_byte,bits_per_byte,d_bits_per_byte,time_ms_per_token,flops_per_token,sample_var\n")
        for r in [dict(exact)] + rows:
            f.write("%d,%d,%.6f,%.6f,%.6f,%.5f,%.1f,%.6e\n" % (r["S"], r["seed"], r["loss"], r["bits_per_byte"],
                    r["bits_per_byte"] - exact["bits_per_byte"], r["time_ms_per_token"], r["flops_per_token"],
                    r["sample_var"]))
    svg(rows, exact, args.out + ".svg", "Sampled attention on %s: bits per byte and time vs draws" % args.model.split("/")[-1])
    print("wrote %s.{json,csv,svg}" % args.out)


if __name__ == "__main__":
    sys.exit(main())
