#!/usr/bin/env bash
# Fuzzing with libFuzzer (docs/reliability.md). Builds the harnesses of tests/fuzz/ with clang,
# -fsanitize=fuzzer,address,undefined, in their own build dir (the main build uses g++).
#   tools/fuzz.sh smoke            replay seeds and saved inputs, then fuzz each harness 12 s (CI; ~2 min)
#   tools/fuzz.sh long [SECONDS]   fuzz each harness for SECONDS (default 600), one after another
#   tools/fuzz.sh build            only build
# Environment: QTF_FUZZ_BUILD (build dir, default build-fuzz), QTF_FUZZ_SMOKE_SECONDS (default 12),
# QTF_FUZZ_HARNESSES (default "reader model tokenizer prompt request gguf safetensors json").
# The working corpus grows in $QTF_FUZZ_BUILD/corpus-work/<harness>; crash inputs are saved as
# $QTF_FUZZ_BUILD/crashes/<harness>-crash-*; replay one with: $QTF_FUZZ_BUILD/tests/fuzz/fuzz_<harness> FILE
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
build=${QTF_FUZZ_BUILD:-build-fuzz}
harnesses=${QTF_FUZZ_HARNESSES:-reader model tokenizer prompt request gguf safetensors json}
jobs=$(nproc 2>/dev/null || echo 2)

case "$mode" in
  smoke) seconds=${QTF_FUZZ_SMOKE_SECONDS:-12} ;;
  long) seconds=${2:-600} ;;
  build) ;;
  *) echo "usage: tools/fuzz.sh smoke | long [SECONDS] | build" >&2; exit 2 ;;
esac

command -v clang++ >/dev/null || { echo "tools/fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQTF_FUZZ=ON -DQTF_SANITIZE=fuzzer-no-link,address,undefined -DQTF_WERROR=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize-ignorelist=$PWD/tests/fuzz/ubsan_ignorelist.txt" \
  -DQTF_BUILD_BENCH=OFF -DQTF_BUILD_TOOLS=ON >/dev/null
targets="fuzz_corpus"
for h in $harnesses; do targets="$targets fuzz_$h"; done
# shellcheck disable=SC2086
cmake --build "$build" -j"$jobs" --target $targets
[ "$mode" = build ] && exit 0

seeds="$build/corpus"
rm -rf "$seeds"
"$build/tests/fuzz/fuzz_corpus" "$seeds" >/dev/null
mkdir -p "$build/crashes"

seed_dirs() {  # the seed folders of one harness (as in tests/fuzz/CMakeLists.txt, less the large fixtures)
  case "$1" in
    reader|model) echo "$seeds/files" ;;
    tokenizer) echo "$seeds/text" ;;
    prompt) echo "$seeds/prompt" ;;
    request) echo "$seeds/request" ;;
    gguf) echo "$seeds/gguf" ;;
    safetensors) echo "$seeds/safetensors" ;;
    json) echo "$seeds/json" ;;
  esac
}
max_len() {
  case "$1" in
    reader|model) echo 16384 ;;
    tokenizer) echo 4096 ;;
    prompt) echo 512 ;;
    request) echo 4096 ;;
    gguf) echo 65536 ;;
    safetensors|json) echo 8192 ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total_execs=0
for h in $harnesses; do
  bin="$build/tests/fuzz/fuzz_$h"
  work="$build/corpus-work/$h"
  mkdir -p "$work"
  log="$build/fuzz_$h.log"
  replay=""  # also replayed, not mutated: real exported models, and inputs that once failed
  case "$h" in
    reader|model) replay=tests/fixtures ;;
    safetensors|json) replay=tests/fixtures/tinystories-656k ;;  # the real HF files
  esac
  [ -d "tests/fuzz/regressions/$h" ] && replay="$replay tests/fuzz/regressions/$h"
  # Inputs that reach UB inside third-party headers (ignored here by ubsan_ignorelist.txt; GCC's UBSan
  # in tools/sanitize.sh has no ignore list, so ctest does not replay these).
  [ -d "tests/fuzz/thirdparty/$h" ] && replay="$replay tests/fuzz/thirdparty/$h"
  # shellcheck disable=SC2046,SC2086
  "$bin" -runs=0 $(seed_dirs "$h") $replay >"$log" 2>&1 || { cat "$log"; echo "fuzz_$h: seed replay failed" >&2; exit 1; }
  start=$(date +%s)
  # shellcheck disable=SC2046
  if ! "$bin" "$work" $(seed_dirs "$h") -max_total_time="$seconds" -max_len="$(max_len "$h")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/crashes/$h-" >>"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz_$h: FAILED (input saved under $build/crashes/)" >&2
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz_$h: ${execs:-?} executions in $(( $(date +%s) - start )) s, $cov, corpus $(ls "$work" | wc -l) files, 0 crashes"
  total_execs=$(( total_execs + ${execs:-0} ))
done
echo "tools/fuzz.sh $mode: $total_execs executions, no crashes"
