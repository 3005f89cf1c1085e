#!/bin/bash
# Regenerates the random-weight scale models of issue 13 (vocab 256, context 512, stored TT rank 8):
# d=512 L=6 d_ff=2048 and d=768 L=12 d_ff=3072, each dense, TT, and TT with the quantum parts, by
# tools/train's random init and export (bench/scale/make_model.py). Needs PyTorch and numpy.
#   bench/scale/models.sh [OUT_DIR]        (default build/models-scale; PYTHON=... picks the interpreter)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-build/models-scale}
py=${PYTHON:-python3}
mkdir -p "$out"
for shape in d512 d768; do
  for kind in dense tt ttq; do
    f="$out/$shape-$kind.qtf"
    [ -f "$f" ] || "$py" "$here/make_model.py" --shape "$shape" --kind "$kind" --out "$f"
  done
done
