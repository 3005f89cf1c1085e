#!/bin/bash
# A/B of qtf builds on one machine, in one run, interleaved: the d=768 TT scale models' tg64 at 1, 2, 4,
# 8 and 16 threads and pp64 at 1 and 4 (two rounds, each build in turn), plus bench_kernels' thread costs
# (an empty pool region, a vector handed between splits, one TT matvec in parts) of the last build.
# On a shared VM whose speed drifts between calls, compare builds within one run, not across runs.
#   bench/scale/ab.sh OUT_DIR MODEL_DIR NAME=SOURCE_DIR...     (MODEL_DIR: d768-tt.qtf, d768-ttq.qtf;
#   bench/scale/models.sh makes them; a SOURCE_DIR: a checkout or `git archive REV | tar x -C DIR`)
# Output: OUT_DIR/ab.csv (name,model,test,threads,build, then qtf bench's CSV row), bench_threads.txt.
set -uo pipefail
out=$1 models=$2
shift 2
mkdir -p "$out"
log=$out/log.txt
names=()
for spec in "$@"; do
  name=${spec%%=*} src=${spec#*=}
  names+=("$name")
  targets=qtf
  [ "$spec" = "${!#}" ] && targets="qtf bench_kernels"
  cmake -S "$src" -B "/tmp/ab-$name" -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF > /dev/null 2>> "$log"
  cmake --build "/tmp/ab-$name" -j"$(nproc)" --target $targets >> "$log" 2>&1 || { echo "build $name failed" >&2; exit 1; }
done
last=${names[${#names[@]}-1]}
bk=$(find "/tmp/ab-$last" -name bench_kernels -type f | head -1)
[ -n "$bk" ] && "$bk" --benchmark_filter="pool|tt_parts" --benchmark_min_time=0.3 > "$out/bench_threads.txt" 2>> "$log"
csv=$out/ab.csv
for m in tt ttq; do
  for t in 1 2 4 8 16; do
    for round in 1 2; do
      for name in "${names[@]}"; do
        for test in tg pp; do
          if [ $test = tg ]; then a="-p 0 -n 64"; else a="-p 64 -n 0"; [ $t = 1 ] || [ $t = 4 ] || continue; fi
          row=$("/tmp/ab-$name/qtf" bench -m "$models/d768-$m.qtf" $a -r 5 -t $t -o csv 2>> "$log" | tail -1)
          echo "d768-$m,$test,$t,$name,$row" >> "$csv"
        done
      done
    done
  done
done
