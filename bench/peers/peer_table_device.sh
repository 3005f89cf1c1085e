#!/bin/bash
# bench/peers/peer_table.py on a machine without network (the device machine): builds qtf and a llama.cpp
# source tree you copied there yourself, then runs the table. Nothing here downloads anything.
#   bench/peers/peer_table_device.sh LLAMA_SRC WORK OUT THREADS [ROUNDS [SHAPES [TYPES]]]
# LLAMA_SRC: a llama.cpp tree (bench/peers/trim_llama.sh makes one small enough to travel; bench/README.md
# "Peer table" says which commit). WORK keeps the builds and model files between calls; OUT receives
# peers.md, peers.json, the log.
# Headers the machine lacks (xsimd, doctest) may come in build-devdeps/include (QTF_DEVDEPS).
set -euo pipefail
src=$1 work=$2 out=$3 threads=$4 rounds=${5:-1} shapes=${6:-stories15M,stories42M,stories110M} types=${7:-f32,8,4}
here=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
jobs=$(nproc)
mkdir -p "$work" "$out"
deps=${QTF_DEVDEPS:-$here/build-devdeps/include}
extra=()
[ -d "$deps" ] && extra=(-DQTF_XSIMD_INCLUDE_DIR="$deps" -DQTF_DOCTEST_INCLUDE_DIR="$deps")
if [ ! -x "$work/qtf-build/qtf" ]; then
  cmake -S "$here" -B "$work/qtf-build" -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF -DQTF_BUILD_BENCH=OFF \
    "${extra[@]}" > "$out/qtf-build.log" 2>&1
  cmake --build "$work/qtf-build" -j"$jobs" --target qtf >> "$out/qtf-build.log" 2>&1
fi
lb=$work/llama-build/bin
if [ ! -x "$lb/llama-bench" ]; then
  cmake -S "$src" -B "$work/llama-build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    > "$out/llama-build.log" 2>&1
  cmake --build "$work/llama-build" -j"$jobs" --target llama-bench llama-quantize llama-simple \
    llama-convert-llama2c-to-ggml >> "$out/llama-build.log" 2>&1
fi
# The tree's own commit only when it is a checkout (a copied tree inside this repository would report
# qtf's HEAD), else its build-info.cmake/VERSION if any.
if [ -e "$src/.git" ]; then git -C "$src" rev-parse HEAD; else cat "$src/VERSION" 2>/dev/null || echo "unknown (no .git)"; fi \
  > "$out/llama-version.txt" 2>/dev/null || true
lscpu > "$out/lscpu.txt" 2>/dev/null || true
"$py" "$here/bench/peers/peer_table.py" --qtf "$work/qtf-build/qtf" --llama-bin "$lb" --work "$work/models" \
  --threads "$threads" --rounds "$rounds" --shapes "$shapes" --types "$types" --json "$out/peers.json" \
  > "$out/peers.md" 2> "$out/peers.log"
cat "$out/peers.md"
