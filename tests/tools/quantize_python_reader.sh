#!/bin/bash
# tools/train's reader (qtf_format.py) reads what `qtf quantize` writes: every tensor of a q8, an f16, a
# q4, a q3, a q4s and a q3s shakespeare-qtf is within half a quantization step (q8/i8), 2^-11 relative (f16) or a step
# (q4, q3, q4s, q3s) of the f32 one. And its writer encodes q4, q3, q4s and q3s as `qtf quantize` does, bit for bit:
# every q4/q3/q4s/q3s matrix of the dense model DENSE (rows of several blocks, the last one padded) quantised
# by both reads back to the same values.
#   quantize_python_reader.sh QTF MODEL.qtf TRAIN_DIR DENSE.qtf
set -euo pipefail
qtf=$1 model=$2 train=$3 dense=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$qtf" quantize "$model" "$tmp/q8.qtf" --type q8 > /dev/null
"$qtf" quantize "$model" "$tmp/f16.qtf" --type f16 > /dev/null
for t in q4 q3 q4s q3s; do
  "$qtf" quantize "$model" "$tmp/$t.qtf" --type $t > /dev/null
  "$qtf" verify --deep "$tmp/$t.qtf" | grep -q "deep: all weights finite, model binds"  # the blocks checked
  "$qtf" quantize "$dense" "$tmp/dense-$t.qtf" --type $t > /dev/null
  "$qtf" inspect "$tmp/dense-$t.qtf" --json > "$tmp/dense-$t.json"
done
/usr/bin/python3 - "$model" "$tmp" "$train" "$dense" <<'PY'
import json
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import qtf_format as q
_, ref = q.read_qtf(sys.argv[1])
# q4: a block's values within a step |d| of the weights (the clamped end), |d| about max|block| / 8: 0.15
# of the row's largest value bounds it; a wrong nibble or block order is off by about the largest value.
# q3: |d| about max|block| / 4, and the search may clamp the largest value by more: 0.35.
for kind, tol in (("q8", 0.5 / 127), ("f16", 2.0 ** -11), ("q4", 0.15), ("q3", 0.35), ("q4s", 0.15), ("q3s", 0.35)):
    _, got = q.read_qtf(sys.argv[2] + "/" + kind + ".qtf")
    assert sorted(got) == sorted(ref), kind
    worst = 0.0
    for name, a in ref.items():
        # q8 rows (and the f32 vectors, copied): error <= scale/2 = max|row| / 254; f16: 2^-11 relative
        # above the halves' subnormal spacing. The q8 TT cores are balanced along their bonds (a change
        # of basis: other numbers, the same matrix), so only their shape and finiteness are checked here.
        b = got[name].astype(np.float32)
        if kind in ("q8", "q4", "q3", "q4s", "q3s") and ".core." in name:
            err = 0.0
        else:
            dev = np.maximum(np.abs(b - a) - 6e-8, 0)
            err = float(np.max(dev / (np.abs(a).max(axis=-1, keepdims=True) + 1e-30)))
        worst = max(worst, err)
        assert b.shape == a.shape and np.all(np.isfinite(b)), name
    assert worst <= tol * 1.001, (kind, worst)
    print(kind, "max relative error", worst, "<=", tol)
_, dref = q.read_qtf(sys.argv[4])
for kind in ("q4", "q3", "q4s", "q3s"):
    grids = {}
    _, got = q.read_qtf(sys.argv[2] + "/dense-" + kind + ".qtf", grids)
    names = [t["name"] for t in json.load(open(sys.argv[2] + "/dense-" + kind + ".json"))["tensors"] if t["dtype"] == kind]
    assert len(names) >= 4, (kind, names)
    for name in names:
        my_grids = {}
        _, mine = q.read_qtf(q.write_qtf(None, {}, [("x", dref[name], kind)]), my_grids)
        assert np.array_equal(mine["x"], got[name]), (kind, name, float(np.abs(mine["x"] - got[name]).max()))
        if kind in ("q4s", "q3s"):  # the groups' scales and sub-scales too
            assert all(np.array_equal(a, b) for a, b in zip(my_grids["x"][2], grids[name][2])), (kind, name)
    print(kind, "Python and qtf quantize agree bit for bit on", len(names), "matrices")
print("read back")
PY
