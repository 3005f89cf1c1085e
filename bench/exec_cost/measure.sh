#!/bin/sh
# Decode speed and peak RSS with and without execution by cost (docs/runtime.md "Execution by cost"):
# every model at --mem-budget 0 (the TT plans: the engine before this change) and auto, interleaved over
# ROUNDS rounds, one thread pinned to CPU $CPU. The speed is CPU time: task-clock of `qtf bench -p 0 -n 128`
# with 12 repetitions minus the same with 2, over the 10 x 128 tokens between (load, context creation
# and warm-up cancel out); peak RSS from /usr/bin/time -v of the 12-repetition run.
#
#   bench/exec_cost/measure.sh QTF ROUNDS MODEL...     (prints: model budget round cpu_tok_s peak_rss_kib)
set -e
QTF=$1
ROUNDS=$2
shift 2
CPU=${CPU:-1}
task_ms() {  # task-clock in ms of one bench run; its peak RSS into $RSS_FILE
  /usr/bin/time -v -o "$RSS_FILE" perf stat -x, -e task-clock taskset -c "$CPU" "$QTF" bench -m "$1" -p 0 -n 128 \
    -r "$2" --mem-budget "$3" 2>&1 >/dev/null | awk -F, '/task-clock/ {print $1}'
}
RSS_FILE=$(mktemp)
trap 'rm -f "$RSS_FILE"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for model in "$@"; do
    for budget in 0 auto; do
      lo=$(task_ms "$model" 2 "$budget")
      hi=$(task_ms "$model" 12 "$budget")
      rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$RSS_FILE")
      awk -v m="$model" -v b="$budget" -v r="$round" -v lo="$lo" -v hi="$hi" -v rss="$rss" \
        'BEGIN { printf "%s %s %d %.0f %d\n", m, b, r, 1280 / ((hi - lo) / 1000), rss }'
    done
  done
done
