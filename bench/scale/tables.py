"""The markdown tables of bench/README.md ("On the device machine") from one run_device.sh (or
run_scale.sh) output folder: per model and thread count pp64, tg64, pp/tg and tg against its physical
limit (qtf bench's roofline columns; without them, dense against
bench_roofline's 1 GiB read bandwidth and TT against its AVX-512 FMA peak at that thread count), then the thread scaling (speed-up over 1 thread and, at 4 threads,
the fraction of linear that issue 13 sets at >= 0.7), then the peers.

    python3 bench/scale/tables.py OUT_DIR

From a bench/scale/ab.sh folder (ab.csv): per model, test and thread count each build's runs (tok/s)
and its speed-up over its own one-thread best, with the fraction of linear.
"""
import csv
import json
import os
import sys


def ab_tables(path):
    runs = {}  # (model, test, threads, build) -> [tok/s]
    builds, models = [], []
    for r in csv.reader(open(path)):
        model, test, threads, build = r[0], r[1], int(r[2]), r[3]
        runs.setdefault((model, test, threads, build), []).append(float(r[4 + 10]))  # qtf bench's avg_ts
        if build not in builds:
            builds.append(build)
        if model not in models:
            models.append(model)
    print("| model | test | threads | " + " | ".join(f"{b}: tok/s (runs), speed-up, of linear" for b in builds) + " |")
    print("|---|---|---:|" + "---|" * len(builds))
    for m in models:
        for test in ("tg", "pp"):
            for t in (1, 2, 4, 8, 16):
                if (m, test, t, builds[0]) not in runs:
                    continue
                cells = []
                for b in builds:
                    v, one = runs[(m, test, t, b)], max(runs[(m, test, 1, b)])
                    cells.append(f"{' / '.join(f'{x:.0f}' for x in v)}, {max(v) / one:.2f}x, {max(v) / one / t:.2f}")
                print(f"| {m} | {test}64 | {t} | " + " | ".join(cells) + " |")


def main():
    out = sys.argv[1]
    if os.path.exists(os.path.join(out, "ab.csv")):
        return ab_tables(os.path.join(out, "ab.csv"))
    rows = list(csv.DictReader(open(os.path.join(out, "scale.csv"))))
    rate = {}  # (model, threads, test) -> (mean, sd)
    info = {}
    order = []
    for r in rows:
        key = (r["model"], int(r["threads"]), r["test"])
        rate[key] = (float(r["avg_ts"]), float(r["stddev_ts"]))
        info[(r["model"], int(r["threads"]))] = r
        if r["model"] not in order:
            order.append(r["model"])
    models = [m for m in order if not m.endswith("-b1")]
    # roofline.md (bench_roofline): per thread count, the 1 GiB read bandwidth and the AVX-512 FMA peak
    limits = {}
    roof = os.path.join(out, "roofline.md")
    for line in open(roof) if os.path.exists(roof) else []:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].isdigit():
            limits[int(cells[0])] = (float(cells[3]), float(cells[6]))

    print("| model | file | threads | pp64 | tg64 | pp/tg | tg vs its limit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in models:
        for t in sorted({k[1] for k in rate if k[0] == m}):
            pp, tg = rate.get((m, t, "pp64")), rate.get((m, t, "tg64"))
            if not pp or not tg:
                continue
            r = info[(m, t)]
            mib = int(r["model_size"]) / 2**20
            achieved, fraction = float(r["roofline_achieved"]), float(r["roofline_fraction"])
            dense = "dense" in m
            unit = "GB/s" if dense else "GFLOP/s"
            if fraction == 0 and t in limits:  # bench ran without --roofline: against bench_roofline's figures
                peak = limits[t][0 if dense else 1]
                fraction = achieved / peak
                unit += f" = {100 * fraction:.0f}% of {peak:.1f}"
                fraction = 0
            limit = f"{achieved:.1f} {unit}" + (f" = {100 * fraction:.0f}%" if fraction > 0 else "")
            print(f"| {m} | {mib:.1f} MiB | {t} | {pp[0]:.0f} ± {pp[1]:.0f} | {tg[0]:.1f} ± {tg[1]:.1f} | "
                  f"{pp[0] / tg[0]:.1f}x | {limit} |")
    b1 = [(m[:-3], rate[(m, 1, "pp64")][0]) for m in order if m.endswith("-b1") and (m, 1, "pp64") in rate]
    if b1:
        print("\nThe prompt token by token (`-b 1`, 1 thread): " +
              ", ".join(f"{m} {v:.1f}" for m, v in b1) + " tok/s.")

    print("\n| model | pp64 speed-up at 2 / 4 / 8 / 16 threads | at 4: of linear | tg64 speed-up | at 4: of linear |")
    print("|---|---|---:|---|---:|")
    for m in models:
        cells = []
        for test in ("pp64", "tg64"):
            one = rate.get((m, 1, test))
            ups = [rate[(m, t, test)][0] / one[0] for t in (2, 4, 8, 16) if one and (m, t, test) in rate]
            if len(ups) < 2:
                break
            cells += [" / ".join(f"{u:.2f}" for u in ups), f"{ups[1] / 4:.2f}"]
        if cells:
            print(f"| {m} | " + " | ".join(cells) + " |")

    peers = os.path.join(out, "peers.jsonl")
    if os.path.exists(peers):
        print("\nPeers (tok/s):")
        for line in open(peers):
            p = json.loads(line)
            if "torch" in p:
                print(f"- PyTorch {p['torch']} eager, KV cache, {p['threads']} thread: pp64 {p['pp64']:.1f}, tg64 {p['tg64']:.1f}")
            else:
                print(f"- llama2.c run.c {p['label']}: {p['tok_s']:.1f}")


if __name__ == "__main__":
    main()
