#!/usr/bin/env bash
# The main job in one command: install what is missing, build, and generate text with the shipped
# default model, printing the per-token report. Extra arguments go to `qtf run`.
#   tools/demo.sh                       # default prompt
#   tools/demo.sh -p "ROMEO:" -n 300    # your own
#   QTF_MODEL=models/shakespeare-qtf.qtf tools/demo.sh   # another model
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --minimal
jobs=$(nproc 2>/dev/null || echo 2)
# Only the qtf tool is built; the test/bench options in build/'s cache are left as they are, so
# tools/test.sh afterwards builds on this build/ instead of finding a tests-off cache.
cmake -S . -B "${QTF_BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release >/dev/null
[ "${QTF_CONFIGURE_ONLY:-0}" = 1 ] && exit 0  # tests/repo/check_readme_order.sh: the configure step alone
cmake --build build -j"$jobs" --target qtf
# The default is the best point of the compression frontier (README "Compression frontier": lowest loss of
# every shipped model, 2.1x smaller than its teacher). QTF_MODEL=models/shakespeare-qtf.qtf shows the
# seed configuration instead, whose report has the quantum columns (entropy, hardness, adaptive rank, route).
model=${QTF_MODEL:-models/shakespeare-tt2.qtf}
echo "== qtf verify $model (model card in models/README.md)"
build/qtf verify "$model"
echo "== qtf run: text streams as it is generated; per-token report in build/report.txt"
if [ $# -eq 0 ]; then set -- -p "ROMEO:" -n 200; fi
build/qtf run -m "$model" --seed 42 --report table build/report.txt "$@"
echo "== first rows of the per-token report (per layer: entropy S, hardness h, rank r, route; a classical TT has S = h = 0 and a fixed rank)"
head -n 12 build/report.txt
