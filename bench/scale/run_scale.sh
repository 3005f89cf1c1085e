#!/bin/bash
# The scale table of bench/README.md in one run: qtf pp/tg over thread counts (each run pinned to the
# first N cores), prompt blocks vs token by token, the roofline (bench_roofline), and the peers at the
# same shapes: PyTorch (bench/peers/torch_gpt.py) and, when you give the path of a llama2.c `run` you
# built yourself, run.c (bench/peers/llama2c_peer.py; L2C_RUN: single-thread build, L2C_RUNOMP: -fopenmp).
#   bench/scale/run_scale.sh BUILD_DIR MODEL_DIR OUT_DIR [THREADS (default "1 2 4 8 16")]
set -uo pipefail
build=$1 models=$2 out=$3 threads=${4:-"1 2 4 8 16"}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
pin() { local t=$1; shift; if command -v taskset > /dev/null; then taskset -c 0-$((t - 1)) "$@"; else "$@"; fi; }
max_t=$(for t in $threads; do echo "$t"; done | sort -n | tail -1)
{ lscpu | grep -E "Model name|^CPU\(s\)|MHz|L2|L3"; } > "$out/machine.txt" 2>&1
"$build/bench/roofline/bench_roofline" --threads "$(echo $threads | tr ' ' ,)" --mib 1024 > "$out/roofline.md"
for m in "$models"/*.qtf; do
  name=$(basename "$m" .qtf)
  for t in $threads; do
    pin "$t" "$build/qtf" bench -m "$m" -p 64 -n 64 -r 3 -t "$t" -o csv | tail -n +2 | sed "s/^/$name,/" >> "$out/qtf.csv"
  done
  pin 1 "$build/qtf" bench -m "$m" -p 64 -n 0 -r 3 -b 1 -o csv | tail -n +2 | sed "s/^/$name-b1,/" >> "$out/qtf.csv"
done
for shape in "512 6 8 2048" "768 12 12 3072"; do
  set -- $shape
  pin 1 "$py" "$here/../peers/torch_gpt.py" --d "$1" --layers "$2" --heads "$3" --d_ff "$4" -p 64 -n 64 -r 3 >> "$out/peers.jsonl"
  [ -n "${L2C_RUN:-}" ] && pin 1 "$py" "$here/../peers/llama2c_peer.py" --run "$L2C_RUN" --d "$1" --layers "$2" \
    --heads "$3" --d_ff "$4" -n 256 -r 3 --label 1thread >> "$out/peers.jsonl"
  if [ -n "${L2C_RUNOMP:-}" ]; then
    for t in 4 "$max_t"; do
      OMP_NUM_THREADS=$t pin "$t" "$py" "$here/../peers/llama2c_peer.py" --run "$L2C_RUNOMP" --d "$1" --layers "$2" \
        --heads "$3" --d_ff "$4" -n 256 -r 3 --label "omp$t" >> "$out/peers.jsonl"
    done
  fi
done
echo "run_scale.sh: results in $out"
