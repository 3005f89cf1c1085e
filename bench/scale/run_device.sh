#!/bin/bash
# Issue 13 in one run (bench/README.md "Scale on the device"): thread scaling 1..16 of qtf at the d=768
# scale models (dense f32/q8/f16, TT f32/q8, TT + quantum parts), bench_roofline, the peers at the same
# shape (llama2.c run.c, built here from RUN_C, one thread and OpenMP 4/16; PyTorch eager with a KV
# cache, one thread), and the shipped models in f32/q8/f16. Every run pinned to the first N cores.
#   bench/scale/run_device.sh RUN_C OUT_DIR          (from the repository root; needs torch, gcc, taskset)
# RUN_C: karpathy/llama2.c's run.c, fetched by you (it is not part of this repository).
set -uo pipefail
run_c=$1 OUT=$2
mkdir -p "$OUT"
log=$OUT/log.txt
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*" >> "$log"; }
pin() { local t=$1; shift; taskset -c 0-$((t - 1)) "$@"; }
{ lscpu; nproc; gcc --version | head -1; python3 -c "import torch; print('torch', torch.__version__)"; } > "$OUT/machine.txt" 2>&1
M=/tmp/qtf-scale-models; mkdir -p $M
for k in dense tt ttq; do  # tools/train's random init at the d=768 shape, three at once
  [ -f $M/d768-$k.qtf ] || (OMP_NUM_THREADS=2 python3 bench/scale/make_model.py --shape d768 --kind $k --out $M/d768-$k.qtf >> "$log" 2>&1) &
done
cmake -S . -B /tmp/qtf-scale-build -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF -DQTF_BUILD_BENCH=OFF > /dev/null 2>> "$log"
cmake --build /tmp/qtf-scale-build -j10 --target qtf >> "$log" 2>&1
g++ -O3 -march=native -std=c++17 -pthread -o /tmp/bench_roofline bench/roofline/roofline.cpp >> "$log" 2>&1
gcc -Ofast -march=native -o /tmp/run "$run_c" -lm >> "$log" 2>&1
gcc -Ofast -march=native -fopenmp -o /tmp/runomp "$run_c" -lm >> "$log" 2>&1
wait
stamp "built, models made"
Q=/tmp/qtf-scale-build/qtf
$Q quantize $M/d768-dense.qtf $M/d768-dense-q8.qtf --type q8 >> "$log" 2>&1
$Q quantize $M/d768-dense.qtf $M/d768-dense-f16.qtf --type f16 >> "$log" 2>&1
$Q quantize $M/d768-tt.qtf $M/d768-tt-q8.qtf --type q8 >> "$log" 2>&1
timeout 90 /tmp/bench_roofline --threads 1,2,4,8,16 --mib 1024 > "$OUT/roofline.md" 2>> "$log"
stamp "roofline"
csv=$OUT/scale.csv  # qtf bench's CSV, prefixed by model and threads; MODEL-b1: the prompt token by token
echo "model,threads,$($Q bench -m $M/d768-tt.qtf -p 1 -n 0 -r 1 -o csv | head -1)" > $csv
for name in d768-dense d768-dense-q8 d768-tt d768-ttq d768-dense-f16 d768-tt-q8; do
  for t in 1 2 4 8 16; do
    [ $name = d768-dense-f16 ] || [ $name = d768-tt-q8 ] && [ $t != 1 ] && continue
    pin $t timeout 60 $Q bench -m $M/$name.qtf -p 64 -n 64 -r 3 -t $t -o csv 2>> "$log" | tail -n +2 | sed "s/^/$name,$t,/" >> $csv
  done
  pin 1 timeout 60 $Q bench -m $M/$name.qtf -p 64 -n 0 -r 3 -b 1 -o csv 2>> "$log" | tail -n +2 | sed "s/^/$name-b1,1,/" >> $csv
  stamp "scaled $name"
done
for name in d768-dense d768-dense-q8 d768-tt; do  # prompt block size: MODEL-pp128-bB, 1 thread
  for b in 32 64 128; do
    pin 1 timeout 60 $Q bench -m $M/$name.qtf -p 128 -n 0 -r 3 -b $b -o csv 2>> "$log" | tail -n +2 | sed "s/^/$name-pp128-b$b,1,/" >> $csv
  done
done
stamp "block sizes"
peers=$OUT/peers.jsonl
pin 1 timeout 90 python3 bench/peers/torch_gpt.py --d 768 --layers 12 --heads 12 --d_ff 3072 -p 64 -n 64 -r 3 >> $peers 2>> "$log"
pin 1 timeout 90 python3 bench/peers/llama2c_peer.py --run /tmp/run --d 768 --layers 12 --heads 12 --d_ff 3072 -n 128 -r 2 \
  --label 1thread >> $peers 2>> "$log"
for t in 4 16; do
  OMP_NUM_THREADS=$t pin $t timeout 60 python3 bench/peers/llama2c_peer.py --run /tmp/runomp --d 768 --layers 12 --heads 12 \
    --d_ff 3072 -n 128 -r 2 --label omp$t >> $peers 2>> "$log"
done
stamp "peers"
# The machine's own scaling, again after the qtf runs: on a shared host the FMA and bandwidth figures at
# 4-8 threads move between runs, and thread scaling is read against both samples.
timeout 90 /tmp/bench_roofline --threads 1,2,4,8,16 --mib 1024 > "$OUT/roofline-after.md" 2>> "$log"
sh=$OUT/shipped.csv
echo "model,type,$($Q bench -m models/shakespeare-dense.qtf -p 1 -n 0 -r 1 -o csv | head -1)" > $sh
for m in models/*.qtf; do
  b=$(basename $m .qtf)
  $Q quantize $m /tmp/$b-q8.qtf --type q8 > /dev/null && $Q quantize $m /tmp/$b-f16.qtf --type f16 > /dev/null
  for ty in f32 q8 f16; do
    f=/tmp/$b-$ty.qtf; [ $ty = f32 ] && f=$m
    pin 1 timeout 30 $Q bench -m $f -p 64 -n 128 -r 5 -o csv 2>> "$log" | tail -n +2 | sed "s/^/$b,$ty,/" >> $sh
  done
done
stamp "done"
