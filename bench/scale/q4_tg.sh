#!/bin/bash
# q4 against q8 and f32 at the d=768 L=12 dense scale model (issue 26, docs/quantize.md): generation
# (tg64) and the prompt (pp64), one thread pinned to one core (and THREADS more thread counts, pinned to
# the first N cores), the three types interleaved round by round, and the file sizes.
#   bench/scale/q4_tg.sh QTF OUT_DIR [MODEL_DIR [ROUNDS [THREADS...]]]
# QTF: a Release qtf binary. MODEL_DIR (default /tmp/qtf-scale-models) holds or receives d768-dense.qtf
# (bench/scale/make_model.py, needs PyTorch: PYTHON=... picks the interpreter); the q8 and q4 files are
# made next to it. Output: OUT_DIR/q4_tg.csv (model,threads,round, then qtf bench's CSV row), a summary.
set -uo pipefail
qtf=$1 out=$2 models=${3:-/tmp/qtf-scale-models} rounds=${4:-3}
shift 4 2>/dev/null || shift $#
threads=("1" "$@")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out" "$models"
m=$models/d768-dense.qtf
[ -f "$m" ] || ${PYTHON:-python3} "$here/make_model.py" --shape d768 --kind dense --out "$m" || exit 1
for t in q8 q4; do
  [ -f "$models/d768-dense-$t.qtf" ] || "$qtf" quantize "$m" "$models/d768-dense-$t.qtf" --type $t || exit 1
done
csv=$out/q4_tg.csv
echo "model,threads,round,$("$qtf" bench -m "$m" -p 1 -n 0 -r 1 -o csv | head -1)" > "$csv"
for t in "${threads[@]}"; do
  for r in $(seq 1 "$rounds"); do
    for name in d768-dense d768-dense-q8 d768-dense-q4; do
      taskset -c 0-$((t - 1)) "$qtf" bench -m "$models/$name.qtf" -p 64 -n 64 -r 3 -t "$t" -o csv 2>/dev/null |
        tail -n +2 | sed "s/^/$name,$t,$r,/" >> "$csv"
    done
  done
done
ls -l "$models"/d768-dense*.qtf | awk '{print $5, $9}'
# tok/s per model, test and thread count: every round's figure (the CSV's avg_ts column).
python3 - "$csv" <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
runs = collections.defaultdict(list)
for r in rows:
    runs[(r["model"], r["threads"], r["test"])].append(float(r["avg_ts"]))
for (model, t, test), v in sorted(runs.items()):
    print(f"{model:16} t={t:>2} {test:6} tok/s " + " ".join(f"{x:8.1f}" for x in v))
PY
