#!/bin/sh
# Greedy text of a model under one SIMD variant (QTF_SIMD) equals the PyTorch reference's.
#   greedy_variant.sh QTF_BINARY MODEL VARIANT REFERENCE_SCRIPT [TOKENS (default 64)]
# Prints "SKIP: ..." (ctest marks the test skipped) where this build or CPU lacks the variant.
qtf=$1 model=$2 variant=$3 script=$4 n=${5:-64}
err=$(QTF_SIMD=$variant "$qtf" run -m "$model" -p x -n 1 --temp 0 -q 2>&1 >/dev/null) || {
  case "$err" in
    *"not supported by this CPU"* | *"not compiled into this build"*) echo "SKIP: $err"; exit 0 ;;
    *) echo "$err"; exit 1 ;;
  esac
}
echo "variant $variant"
QTF_SIMD=$variant exec /usr/bin/python3 "$script" "$model" -n "$n" --engine "$qtf"
