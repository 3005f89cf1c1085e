#!/bin/bash
# Integer dot products (--act-quant q8) against the float path (off) on the d=768 L=12 dense scale model
# stored q8 and q4 (docs/quantize.md "Integer dot products"): qtf bench pp128/tg128, one thread pinned to
# one core, the two paths interleaved round by round, under each SIMD variant named (default: the best).
#   bench/scale/act_quant.sh QTF MODEL_DIR [ROUNDS [VARIANTS...]]
# MODEL_DIR holds d768-dense-q8.qtf and d768-dense-q4.qtf (bench/scale/q4_tg.sh makes them).
# Prints every round's tok/s per model, variant, path and test.
set -uo pipefail
qtf=$1 models=$2 rounds=${3:-2}
shift 3 2>/dev/null || shift $#
variants=("${@:-auto}")
core=${CORE:-1}
for r in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do
    for m in q8 q4; do
      for aq in off q8; do
        taskset -c "$core" "$qtf" bench -m "$models/d768-dense-$m.qtf" -p 128 -n 128 -r 3 -t 1 --simd "$v" \
          --act-quant "$aq" -o csv 2>/dev/null | tail -n +2 |
          awk -F, -v m="$m" -v v="$v" -v aq="$aq" -v r="$r" '{print m "," v "," aq "," r "," $0}'
      done
    done
  done
done | python3 -c '
import csv, sys, collections
runs = collections.defaultdict(list)
for row in csv.reader(sys.stdin):
    m, v, aq, rest = row[0], row[1], row[2], row[4:]
    runs[(m, v, rest[7], aq)].append(float(rest[10]))  # test, avg_ts
for (m, v, test, aq), ts in sorted(runs.items()):
    print(f"{m} {v:10} {test:6} act-quant {aq:3} tok/s " + " ".join(f"{x:7.1f}" for x in ts))
'
