"""qtf against llama2.c's run.c on one real checkpoint (stories260K), same machine, one run of this script
(docs/llama.md, "Speed"). It neither fetches nor builds run.c or the checkpoint: pass your own binaries.

    python3 bench/peers/llama2c_speed.py --qtf qtf=build/qtf --checkpoint stories260K.bin \
        --run run=./run --run runfast=./runfast --omp runomp=./runomp --threads 1,2 --repeat 7

Converts the checkpoint (tools/convert/llama2c.py) and writes run.c's synthetic tokenizer
(tools/convert/compare_llama2c.py), then, --repeat times each, interleaved: 256 greedy positions from BOS,
`qtf run -m M -p <BOS> -n 255 --temp 0 --no-echo -t T` (its "generated 255 tok ... tok/s") and
`run CKPT -z TOK -t 0 -n 256` (its own "achieved tok/s"), OMP_NUM_THREADS=T for --omp binaries. Every
command is pinned with taskset to the first T CPUs of --cpus. Prints median (min-max) and writes --json. On a shared machine the max (the least disturbed run) says more than
the median.

--cpu-time: CPU time instead of the programs' own wall-clock rates, for a loaded machine (a neighbour's load
stretches wall time, not the CPU time a program itself spends). Each round runs every command twice under
`perf stat -e task-clock`, for 256 positions and for --short positions; the rate is (256 - short) / the
difference in task-clock, so loading, conversion of the prompt and process start cancel out. With T threads
task-clock adds up every thread's CPU time: the figure is then tokens per CPU-second (what the threads cost),
not the wall-clock rate they reach on an idle machine.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "convert"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))


def tok_s(cmd, pattern, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(pattern, r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError("%s: rc %d, no tok/s in its output:\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return float(m.group(1))


def task_clock_ms(cmd, env=None):
    r = subprocess.run(["perf", "stat", "-x,", "-e", "task-clock"] + cmd, capture_output=True, text=True, env=env)
    m = re.search(r"^([0-9.]+),msec,task-clock", r.stderr, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError("%s: rc %d, no task-clock in perf's output:\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return float(m.group(1))


def positions(cmd, n, is_qtf):
    """cmd with its position count set to n: qtf's -n counts generated tokens after the BOS prompt, run.c's all."""
    i = cmd.index("-n")
    return cmd[:i + 1] + [str(n - 1 if is_qtf else n)] + cmd[i + 2:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qtf", action="append", required=True, metavar="NAME=PATH", help="a qtf CLI binary")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--run", action="append", default=[], metavar="NAME=PATH", help="run.c binary, one thread")
    ap.add_argument("--omp", action="append", default=[], metavar="NAME=PATH", help="run.c built with -fopenmp")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cpus", default=None, help="CPU ids to pin to, comma-separated (default: all, in order)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cpu-time", action="store_true", help="tok/s from task-clock differences (see above)")
    ap.add_argument("--short", type=int, default=16, help="--cpu-time: positions of the short run")
    ap.add_argument("--json")
    args = ap.parse_args()
    from compare_llama2c import write_run_tokenizer
    from llama2c import convert

    cpus = args.cpus.split(",") if args.cpus else [str(c) for c in sorted(os.sched_getaffinity(0))]
    threads = [int(t) for t in args.threads.split(",")]
    res = {"checkpoint": os.path.basename(args.checkpoint), "repeat": args.repeat, "cpus": cpus,
           "measure": "task-clock, %d - %d positions" % (256, args.short) if args.cpu_time else "programs' own tok/s",
           "machine": os.uname().nodename, "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                                             if l.startswith("model name")), "?"), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = os.path.join(tmp, "m.qtf"), os.path.join(tmp, "tok.bin")
        h, _ = convert(args.checkpoint, model)
        write_run_tokenizer(tok, h["vocab_size"])
        bos = chr(0x100 + 1)
        jobs = []  # (label, threads, command, env, pattern)
        for t in threads:
            pin = ["taskset", "-c", ",".join(cpus[:t])]
            for spec in args.qtf:
                name, path = spec.rsplit("=", 1)
                jobs.append(("%s -t %d" % (name, t), t, pin + [path, "run", "-m", model, "-p", bos, "-n", "255", "--temp",
                             "0", "--no-echo", "-t", str(t)], None, r"generated 255 tok [0-9.]+ ms \(([0-9.]+) tok/s\)"))
            for spec in args.run if t == 1 else []:
                name, path = spec.rsplit("=", 1)
                jobs.append((name, 1, pin + [path, args.checkpoint, "-z", tok, "-t", "0", "-n", "256"],
                             dict(os.environ, OMP_NUM_THREADS="1"), r"achieved tok/s: ([0-9.]+)"))
            for spec in args.omp:
                name, path = spec.rsplit("=", 1)
                jobs.append(("%s OMP_NUM_THREADS=%d" % (name, t), t, pin + [path, args.checkpoint, "-z", tok, "-t", "0",
                             "-n", "256"], dict(os.environ, OMP_NUM_THREADS=str(t)), r"achieved tok/s: ([0-9.]+)"))
        got = {j[0]: [] for j in jobs}
        for _ in range(args.repeat):  # interleaved: a load change hits every program alike
            for label, t, cmd, env, pat in jobs:
                if args.cpu_time:
                    full, short = task_clock_ms(cmd, env), task_clock_ms(positions(cmd, args.short, pat.startswith("generated")), env)
                    got[label].append((256 - args.short) / ((full - short) / 1e3))
                else:
                    got[label].append(tok_s(cmd, pat, env))
        for label, t, cmd, env, pat in jobs:
            v = got[label]
            row = {"program": label, "threads": t, "median": statistics.median(v), "min": min(v), "max": max(v),
                   "all": v, "command": " ".join(c if c != bos else "$(printf '\\u0101')" for c in cmd)}
            res["rows"].append(row)
            print("%-50s %8.0f tok/s median (%.0f-%.0f)" % (label, row["median"], row["min"], row["max"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
