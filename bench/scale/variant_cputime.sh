#!/bin/bash
# pp128 and tg64 tok/s at one thread from CPU time per kernel variant and --act-quant (docs/simd.md
# "AVX-VNNI, and the integer path under avx512"): perf stat's task-clock of `-r R` minus that of `-r 1`
# is R - 1 runs (load and warm-up cancel, as in pp_cputime.sh). Configurations interleaved round by round.
# usage: variant_cputime.sh QTF ROUNDS R MODEL VARIANT:ACT_QUANT...   e.g. avx512:off avx512:auto
qtf=$1 n=$2 R=$3 m=$4
shift 4
tc() { perf stat -x, -e task-clock "$@" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
for i in $(seq "$n"); do
  for test in pp tg; do
    line="$(basename "$m") $test round $i:"
    for cfg in "$@"; do
      v=${cfg%:*} aq=${cfg#*:}
      if [ "$test" = pp ]; then args=(-p 128 -n 0) N=128; else args=(-p 0 -n 64) N=64; fi
      a=$(tc "$qtf" bench -m "$m" "${args[@]}" -t 1 -r 1 --simd "$v" --act-quant "$aq")
      b=$(tc "$qtf" bench -m "$m" "${args[@]}" -t 1 -r "$R" --simd "$v" --act-quant "$aq")
      line="$line $v/$aq $(echo "$N*1000*($R-1)/($b-$a)" | bc)"
    done
    echo "$line"
  done
done
