#!/bin/bash
# tools/train's reader (qtf_format.py) reads what `qtf quantize` writes: every tensor of a q8, an f16 and a
# q4 shakespeare-qtf is within half a quantization step (q8/i8), 2^-11 relative (f16) or a step (q4) of the
# f32 one.
#   quantize_python_reader.sh QTF MODEL.qtf TRAIN_DIR
set -euo pipefail
qtf=$1 model=$2 train=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$qtf" quantize "$model" "$tmp/q8.qtf" --type q8 > /dev/null
"$qtf" quantize "$model" "$tmp/f16.qtf" --type f16 > /dev/null
"$qtf" quantize "$model" "$tmp/q4.qtf" --type q4 > /dev/null
"$qtf" verify --deep "$tmp/q4.qtf" | grep -q "deep: all weights finite, model binds"  # the q4 blocks checked
/usr/bin/python3 - "$model" "$tmp" "$train" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import qtf_format as q
_, ref = q.read_qtf(sys.argv[1])
# q4: a block's values within a step |d| of the weights (the clamped end), |d| about max|block| / 8: 0.15
# of the row's largest value bounds it; a wrong nibble or block order is off by about the largest value.
for kind, tol in (("q8", 0.5 / 127), ("f16", 2.0 ** -11), ("q4", 0.15)):
    _, got = q.read_qtf(sys.argv[2] + "/" + kind + ".qtf")
    assert sorted(got) == sorted(ref), kind
    worst = 0.0
    for name, a in ref.items():
        # q8 rows (and the f32 vectors, copied): error <= scale/2 = max|row| / 254; f16: 2^-11 relative
        # above the halves' subnormal spacing. The q8 TT cores are balanced along their bonds (a change
        # of basis: other numbers, the same matrix), so only their shape and finiteness are checked here.
        b = got[name].astype(np.float32)
        if kind in ("q8", "q4") and ".core." in name:
            err = 0.0
        else:
            dev = np.maximum(np.abs(b - a) - 6e-8, 0)
            err = float(np.max(dev / (np.abs(a).max(axis=-1, keepdims=True) + 1e-30)))
        worst = max(worst, err)
        assert b.shape == a.shape and np.all(np.isfinite(b)), name
    assert worst <= tol * 1.001, (kind, worst)
    print(kind, "max relative error", worst, "<=", tol)
print("read back")
PY
