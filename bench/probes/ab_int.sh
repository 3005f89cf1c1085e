#!/bin/bash
# A/B of qtf builds' integer GEMMs and prompts on one machine in one run (the device's Xeon: no network;
# headers it lacks come in build-devdeps/include), rounds interleaved:
#   bench/probes/ab_int.sh OUT ROUNDS [S15M_Q4.qtf|-] NAME=SOURCE_DIR...
# SOURCE_DIR: a checkout or `git archive REV | tar x -C DIR`. Builds qtf + bench_kernels of each (in
# parallel), makes a random d768 L12 d_ff 3072 model (bench/scale/make_model.py, needs torch: PYTHON=...)
# quantised to q8 and q4, runs lane_pack_probe.cpp, then per round and build: bench_kernels' integer GEMMs
# (avx512vnni, avx2), `qtf bench -p 128 -n 32` at one thread per variant and at 4 threads, pp128 at 1/4/16
# threads (f32, q8, q4), and the stories15M-shape q4 file at 1/4/16 threads. Every run pinned to cores
# 0..T-1. Output: OUT/{probe.txt,kern.txt,bench.csv,threads.csv,s15.csv} (CSV: round,build,simd,model,
# threads, then qtf bench's CSV row). AB_THREADS (default "1 4 16"): the thread counts of the last two.
# AB_BLOCKS (e.g. "64 128"): prompt blocks (`qtf bench -b`) for threads.csv, its model column then "d-b128".
# AB_PARTS (default "kern bench threads"): which of the per-round parts run (threads alone for a split A/B).
# AB_CXXFLAGS_<NAME>: extra compiler flags for build NAME (a shell identifier), e.g. the split's macros:
#   AB_CXXFLAGS_tiles2=-DQTF_TILES_PER_THREAD=2 bench/probes/ab_int.sh OUT 2 - main=. tiles2=.
set -uo pipefail
OUT=$1 R=$2 S15=$3
shift 3
mkdir -p "$OUT"
log=$OUT/log.txt
here=$(cd "$(dirname "$0")/../.." && pwd)
D=$here/build-devdeps/include
ex=(-DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF -DQTF_BUILD_BENCH=ON)
[ -d "$D" ] && ex+=(-DQTF_XSIMD_INCLUDE_DIR="$D" -DQTF_DOCTEST_INCLUDE_DIR="$D")
py=${PYTHON:-python3}
lscpu > "$OUT/machine.txt" 2>&1
M=/tmp/ab-int-models; mkdir -p $M
[ -f $M/d.qtf ] || (OMP_NUM_THREADS=4 "$py" "$here/bench/scale/make_model.py" --shape d768 --kind dense --out $M/d.qtf >> "$log" 2>&1) &
B=()
for spec in "$@"; do
  b=${spec%%=*} src=${spec#*=}
  B+=("$b")
  flags_var=AB_CXXFLAGS_$b
  flags=()
  [ -n "${!flags_var:-}" ] && flags=(-DCMAKE_CXX_FLAGS="${!flags_var}")
  ( cmake -S "$src" -B /tmp/ab-int-$b "${ex[@]}" "${flags[@]}" > /tmp/ab-int-$b.log 2>&1 &&
    cmake --build /tmp/ab-int-$b -j4 --target qtf bench_kernels >> /tmp/ab-int-$b.log 2>&1 || echo "build $b failed" >> "$log" ) &
done
g++ -O2 -march=native -std=c++17 -o /tmp/ab-int-probe "$here/bench/probes/lane_pack_probe.cpp" >> "$log" 2>&1
wait
Q=/tmp/ab-int-${B[0]}/qtf
[ -f $M/q8.qtf ] || $Q quantize $M/d.qtf $M/q8.qtf --type q8 >> "$log" 2>&1
[ -f $M/q4.qtf ] || $Q quantize $M/d.qtf $M/q4.qtf --type q4 >> "$log" 2>&1
for mib in 256 16; do echo "== $mib MiB" >> "$OUT/probe.txt"; taskset -c 0 /tmp/ab-int-probe $mib >> "$OUT/probe.txt" 2>&1; done
bench() {  # round build simd model-name file threads args...
  local r=$1 b=$2 v=$3 name=$4 f=$5 t=$6; shift 6
  local simd=(); [ "$v" = auto ] || simd=(--simd "$v")
  taskset -c 0-$((t - 1)) /tmp/ab-int-$b/qtf bench -m "$f" "$@" -t "$t" "${simd[@]}" -o csv 2>> "$log" | tail -n +2 |
    sed "s/^/$r,$b,$v,$name,$t,/"
}
parts=" ${AB_PARTS:-kern bench threads} "
for r in $(seq "$R"); do
  for b in "${B[@]}"; do
    [[ $parts == *" kern "* ]] || continue
    for v in avx512vnni avx2; do
      bk=$(find /tmp/ab-int-$b -name bench_kernels -type f | head -1)
      QTF_SIMD=$v taskset -c 0 "$bk" --benchmark_filter='kern_gemm_(q4|i8)_int/(768x768|3072x768|768x3072)/b(1|64)$' \
        --benchmark_min_time=0.1 2>> "$log" | grep kern_ | sed "s/^/$r $b $v /" >> "$OUT/kern.txt"
    done
  done
  for b in "${B[@]}"; do
    [[ $parts == *" bench "* ]] || continue
    for v in avx512vnni avx2 avxvnni; do
      for m in q8 q4; do bench $r $b $v $m $M/$m.qtf 1 -p 128 -n 32 -r 2 >> "$OUT/bench.csv"; done
    done
    for m in q8 q4; do bench $r $b auto $m $M/$m.qtf 4 -p 128 -n 32 -r 2 >> "$OUT/bench.csv"; done
  done
  for b in "${B[@]}"; do
    [[ $parts == *" threads "* ]] || continue
    for t in ${AB_THREADS:-1 4 16}; do
      for blk in ${AB_BLOCKS:-default}; do
        for m in d q8 q4; do
          if [ "$blk" = default ]; then bench $r $b auto $m $M/$m.qtf $t -p 128 -n 0 -r 2
          else bench $r $b auto "$m-b$blk" $M/$m.qtf $t -p 128 -n 0 -r 2 -b "$blk"; fi >> "$OUT/threads.csv"
        done
      done
      [ "$S15" = - ] || bench $r $b auto 15M-q4 "$S15" $t -p 128 -n 64 -r 3 >> "$OUT/s15.csv"
    done
  done
done
echo done >> "$log"
