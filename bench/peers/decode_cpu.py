#!/usr/bin/env python3
"""CPU time per generated token, qtf against llama.cpp, for a shared machine (bench/README.md "Decode").

Each program runs `-p 0 -n 128 -t 1` pinned to one core (taskset -c CORE) under `perf stat -e task-clock`,
once with `-r 1` and once with `-r R` (both run one warm-up first); the difference over (R - 1) * 128
tokens is the CPU time of one token, without the load, the warm-up or the time the process waited for the
core. Programs and models are interleaved, ROUNDS times; min and median per (program, model).

    python3 bench/peers/decode_cpu.py --rounds 3 --reps 3 --llama-bin LLAMA/build/bin \\
        --models W/stories110M-q4.qtf,W/stories110M-q8.qtf build/qtf /tmp/qtf-before llama

W: peer_table.py's work directory. A program is a qtf binary or `llama` (llama-bench from --llama-bin,
on the GGUF beside each .qtf: -q4 -> -q4_0.gguf, -q8 -> -q8_0.gguf, -f32 -> -f32.gguf).
"""
import argparse
import os
import re
import statistics
import subprocess


def task_clock_ms(cmd, env):
    out = subprocess.run(['perf', 'stat', '-x', ',', '-e', 'task-clock'] + cmd, capture_output=True, text=True,
                         env=env)
    for line in out.stderr.splitlines():
        if 'task-clock' in line:
            return float(line.split(',')[0])
    raise RuntimeError('no task-clock from: ' + ' '.join(cmd) + '\n' + out.stderr[-2000:])


def gguf_of(model):
    return re.sub(r'-(q4|q8|f32)\.qtf$', lambda m: {'q4': '-q4_0', 'q8': '-q8_0', 'f32': '-f32'}[m.group(1)] + '.gguf',
                  model)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--reps', type=int, default=3, help='R: timed repetitions of the long run (>= 2)')
    ap.add_argument('--models', required=True, help='comma-separated .qtf files')
    ap.add_argument('--llama-bin', default='', help='llama.cpp build/bin (for the program `llama`)')
    ap.add_argument('--core', default='1')
    ap.add_argument('programs', nargs='+')
    a = ap.parse_args()
    env = dict(os.environ, LD_LIBRARY_PATH=a.llama_bin)

    def cmd(prog, model, reps):
        pin = ['taskset', '-c', a.core]
        if prog == 'llama':
            return pin + [os.path.join(a.llama_bin, 'llama-bench'), '-m', gguf_of(model), '-p', '0', '-n', '128', '-t',
                          '1', '-r', str(reps)]
        return pin + [prog, 'bench', '-m', model, '-p', '0', '-n', '128', '-t', '1', '-r', str(reps)]

    res = {}
    for _ in range(a.rounds):
        for model in a.models.split(','):
            for prog in a.programs:
                d = task_clock_ms(cmd(prog, model, a.reps), env) - task_clock_ms(cmd(prog, model, 1), env)
                res.setdefault((prog, os.path.basename(model)), []).append(d / ((a.reps - 1) * 128))
    for (prog, model), v in res.items():
        lo, med = min(v), statistics.median(v)
        print(f'{prog:28s} {model:24s} ms/token CPU: ' + ' '.join(f'{x:.3f}' for x in v) +
              f'  min {lo:.3f} ({1000 / lo:.1f} tok/s)  median {med:.3f} ({1000 / med:.1f} tok/s)')


if __name__ == '__main__':
    main()
