#!/bin/bash
# Where a prompt's CPU time goes at T threads: a flat perf profile of `qtf bench -p 128 -n 0` on the
# random d768 L12 d_ff 3072 model (bench/scale/make_model.py; torch: PYTHON=...), f32 or q8.
#   bench/probes/prompt_profile.sh OUT [THREADS (default "16 1")] [REPS (default 12)] [KINDS (default d)]
# Builds qtf with frame pointers into /tmp/prompt-profile-build (headers the machine lacks from
# build-devdeps/include). PERF: the perf command (default perf). The device has none: this machine's
# /usr/bin/perf and the libraries `ldd` lists (but libc, libm, libstdc++, libgcc_s) copied into an
# ignored folder and carried, then PERF="env LD_LIBRARY_PATH=DIR/lib DIR/perf". Each run pinned to cores
# 0..T-1; its warm-up and model load are in the profile too (REPS amortises them).
# Output: OUT/bench-KIND-tT.csv (qtf bench's CSV row, without perf), OUT/flat-KIND-tT.txt (self time by
# symbol), OUT/children-KIND-tT.txt (with callees), OUT/lscpu.txt.
set -uo pipefail
O=$1 THREADS=${2:-16 1} REPS=${3:-12} KINDS=${4:-d}
P=${PERF:-perf}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$O" || exit 1
lscpu > "$O/lscpu.txt" 2>&1
D=$here/build-devdeps/include
ex=(); [ -d "$D" ] && ex=(-DQTF_XSIMD_INCLUDE_DIR="$D" -DQTF_DOCTEST_INCLUDE_DIR="$D")
B=/tmp/prompt-profile-build
cmake -S "$here" -B $B -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF "${ex[@]}" \
  -DCMAKE_CXX_FLAGS="-fno-omit-frame-pointer" > $B.log 2>&1 && cmake --build $B -j"$(nproc)" --target qtf >> $B.log 2>&1 ||
  { tail -20 $B.log; exit 1; }
M=/tmp/prompt-profile-models; mkdir -p $M
[ -f $M/d.qtf ] || OMP_NUM_THREADS=8 "${PYTHON:-python3}" "$here/bench/scale/make_model.py" --shape d768 --kind dense --out $M/d.qtf
[ -f $M/q8.qtf ] || $B/qtf quantize $M/d.qtf $M/q8.qtf --type q8 > /dev/null
for m in $KINDS; do
  for t in $THREADS; do
    pin=(taskset -c 0-$((t - 1)))
    "${pin[@]}" $B/qtf bench -m $M/$m.qtf -p 128 -n 0 -r "$REPS" -t "$t" -o csv | tail -1 > "$O/bench-$m-t$t.csv"
    $P record -F 2999 -g -o /tmp/prompt-profile-$m-$t.data "${pin[@]}" $B/qtf bench -m $M/$m.qtf -p 128 -n 0 -r "$REPS" \
      -t "$t" > /dev/null 2> "$O/record-$m-t$t.txt"
    $P report -i /tmp/prompt-profile-$m-$t.data --no-children --stdio --sort sym -g none --percent-limit 0.3 2> /dev/null |
      head -70 > "$O/flat-$m-t$t.txt"
    $P report -i /tmp/prompt-profile-$m-$t.data --children --stdio --sort sym -g none --percent-limit 1 2> /dev/null |
      head -70 > "$O/children-$m-t$t.txt"
  done
done
