#!/usr/bin/env bash
# The main job in one command: install what is missing, build, and generate text with the shipped
# default model, printing the per-token report. Extra arguments go to `qtf run`.
#   tools/demo.sh                       # default prompt
#   tools/demo.sh -p "ROMEO:" -n 300    # your own
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --minimal
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TESTS=OFF -DQTF_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$jobs" --target qtf
model=models/shakespeare-qtf.qtf
echo "== qtf inspect (model card in models/README.md)"
build/qtf verify "$model"
echo "== qtf run: text streams as it is generated; per-token report in build/report.txt"
if [ $# -eq 0 ]; then set -- -p "ROMEO:" -n 200; fi
build/qtf run -m "$model" --seed 42 --report table build/report.txt "$@"
echo "== first rows of the per-token report (entropy S, hardness h, rank r, route per layer)"
head -n 12 build/report.txt
