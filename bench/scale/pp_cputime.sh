#!/bin/bash
# pp128 tok/s at one thread from CPU time (docs/quantize.md "Speed, and the default"): perf stat's
# task-clock of `-r R` minus that of `-r 1` is R - 1 pp128 runs (load and warm-up cancel), so the other
# load of a shared machine counts less than in wall-clock tok/s. Programs interleaved round by round.
# usage: pp_cputime.sh ROUNDS R QTF_MODEL GGUF_MODEL LABEL:BINARY:ARGS...
#   BINARY: a qtf binary (runs `BINARY bench -m QTF_MODEL ARGS`) or `llama` (llama-bench -m GGUF_MODEL
#   ARGS from $LLAMA_BIN: llama.cpp's build/bin, which also holds its shared libraries)
n=$1; R=$2; qm=$3; gm=$4; shift 4
export LD_LIBRARY_PATH=$LLAMA_BIN
tc() { perf stat -x, -e task-clock "$@" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
for i in $(seq $n); do
  line="round $i:"
  for spec in "$@"; do
    IFS=: read -r label bin args <<< "$spec"
    if [ "$bin" = llama ]; then
      a=$(tc $LLAMA_BIN/llama-bench -m $gm -p 128 -n 0 -t 1 -r 1 $args)
      b=$(tc $LLAMA_BIN/llama-bench -m $gm -p 128 -n 0 -t 1 -r $R $args)
    else
      a=$(tc $bin bench -m $qm -p 128 -n 0 -t 1 -r 1 $args)
      b=$(tc $bin bench -m $qm -p 128 -n 0 -t 1 -r $R $args)
    fi
    line="$line $label $(echo "128*1000*($R-1)/($b-$a)" | bc)"
  done
  echo "$line"
done
