#!/usr/bin/env bash
# Cross builds and their tests under qemu (docs/targets.md).
#   tools/cross/test_cross.sh [aarch64|armv7|cortex-m7|x86-cpus|all]     (default: all)
# Linux ARM: builds the engine and the unit tests (Release) in build-cross-<target>/ and runs ctest,
# each test under qemu-user; the SIMD arch the kernels picked must be NEON.
# cortex-m7: builds the firmware example (tools/firmware) and runs it on qemu-system-arm.
# x86-cpus: the native build (build/, made by tools/test.sh) on emulated older x86 CPUs (qemu-x86_64
# -cpu qemu64: SSE2 only; -cpu Haswell: AVX2+FMA, no AVX-512), so run-time dispatch is tested on CPUs
# that lack what the build machine has: it must pick that CPU's best variant, never execute an
# instruction the CPU lacks, pass the kernel tests and give the native greedy text.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
jobs=2  # the CI machine has 2 cores
# test_kernels' three slowest cases: float TT and dense GEMMs (no integer dot products), which every
# variant of the build machine's CPU runs natively (x86: scalar, sse2, avx2, avx512, avx512vnni) and
# ctest runs under qemu-user's default aarch64 CPU (scalar, neon, neondot) and armv7. The dispatch
# checks on other emulated CPUs leave them out: 90-95% of test_kernels' time under emulation.
slow_float="a block's input packed once*,kern TT matvec/matmul equal ref at every rank*,dense matmul with scratch*"

configure_and_build() {  # target source_dir toolchain [cmake args...]
  local target=$1 src=$2 toolchain=$3
  shift 3
  local dir="$root/build-cross-$target"
  echo "== $target: configure and build in build-cross-$target"
  cmake -S "$src" -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$root/toolchains/$toolchain" -DCMAKE_BUILD_TYPE=Release -DQTF_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

run_linux() {  # target toolchain
  local target=$1 dir="$root/build-cross-$1"
  # Tests, the engine and the qtf tool (some tests run it); the toolchain turns benchmarks off.
  configure_and_build "$target" "$root" "$2"
  local has_kernels=0  # asked before the run: `ctest -N` rewrites the log read below
  grep -q 'test_kernels$' <<<"$(ctest --test-dir "$dir" -N)" && has_kernels=1
  # The sweeps over model files take the fixtures, not the shipped models (compare_greedy runs those).
  # armv7 leaves test_threads (concurrent contexts) to aarch64: qemu-user on an x86 host does not show
  # a weaker memory order than the host's, so a second ARM run of it adds its time and no coverage.
  local exclude=()
  [ "$target" = armv7 ] && exclude=(-E '^test_threads$')
  echo "== $target: ctest under qemu-user (model sweeps over the fixtures${exclude:+; not test_threads})"
  QTF_TEST_MODELS=fixtures ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${exclude[@]}"
  # ctest keeps every test's full output here; show which SIMD arch the kernels were compiled for.
  if [ $has_kernels = 0 ]; then
    echo "$target: no test_kernels yet, SIMD arch not checked"
  elif ! grep -i 'neon' "$dir/Testing/Temporary/LastTest.log" | grep -v 'Command:'; then
    echo "$target: test_kernels did not report a NEON SIMD arch" >&2
    return 1
  fi
  if [ "$target" = aarch64 ] && [ $has_kernels = 1 ]; then check_aarch64_dispatch; fi
  compare_greedy "$target"
}

# qemu-user's default aarch64 CPU ("max") has the dot-product extension: dispatch must have picked the
# neondot table for ctest, whose kernel tests ran every variant (scalar, neon, neondot) there. A Cortex-A72
# (Raspberry Pi 4) has none: run-time dispatch must pick plain neon there and pass the integer tests and
# the kernel tests (less the three slow float cases above), never executing sdot.
check_aarch64_dispatch() {
  local dir="$root/build-cross-aarch64" emu="qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu" out t args
  if ! grep -q "simd_arch() = neondot;" "$dir/Testing/Temporary/LastTest.log"; then
    echo "aarch64: on qemu's default CPU (with sdot) run-time dispatch did not pick neondot" >&2
    return 1
  fi
  echo "== aarch64: kernel tests on a CPU without sdot ($emu)"
  for t in test_kernels test_int8; do
    args=()
    [ $t = test_kernels ] && args=(--test-case-exclude="$slow_float")
    out=$($emu "$dir/tests/kernels/$t" "${args[@]}" 2>&1) || { echo "$out" >&2; echo "aarch64-cortex-a72: $t failed" >&2; return 1; }
    if [ $t = test_kernels ] && ! grep -q "simd_arch() = neon;" <<<"$out"; then
      grep 'simd_arch' <<<"$out" >&2
      echo "aarch64-cortex-a72: run-time dispatch did not pick neon" >&2
      return 1
    fi
  done
  echo "aarch64-cortex-a72: test_kernels (less its 3 slowest float cases) and test_int8 pass on plain neon (no sdot)"
}

# Greedy generation of every shipped model must give the same text under qemu as natively (build/qtf,
# made by tools/test.sh before this script runs).
compare_greedy() {  # target
  local dir="$root/build-cross-$1" emu
  if [ "$1" = aarch64 ]; then emu="qemu-aarch64 -L /usr/aarch64-linux-gnu"; else emu="qemu-arm -L /usr/arm-linux-gnueabihf"; fi
  if [ ! -x "$root/build/qtf" ]; then
    echo "$1: no native build/qtf to compare greedy text with" >&2
    return 1
  fi
  # The shipped models, and a converted llama2.c checkpoint (block options: rmsnorm, rotary, swiglu,
  # grouped-query attention; docs/llama.md), whose stand-in tokenizer makes token id i the character
  # U+0100+i: the prompt is ids 1, 7.
  local llama="$root/tests/fixtures/llama2c_tiny.qtf"
  for model in "$root"/models/*.qtf "$llama"; do
    local args=(run -m "$model" -p "ROMEO:" -n 64 --temp 0 -q)
    [ "$model" = "$llama" ] && args=(run -m "$model" -p "$(printf '\xc4\x81\xc4\x87')" -n 30 --temp 0 -q)
    if ! diff <("$root/build/qtf" "${args[@]}" 2>/dev/null) <($emu "$dir/qtf" "${args[@]}" 2>/dev/null) >/dev/null; then
      echo "$1: greedy text of $(basename "$model") differs from the native build" >&2
      return 1
    fi
    echo "$1: greedy text of $(basename "$model") identical to x86"
  done
  # Sampled attention (docs/qllm.md): the draws are integer arithmetic, the picks float32 prefix sums.
  local qllm="$root/models/shakespeare-qllm-646k.qtf"
  if [ -f "$qllm" ]; then
    local args=(run -m "$qllm" -p "ROMEO:" -n 64 --temp 0 -q --attn-samples 64)
    if ! diff <("$root/build/qtf" "${args[@]}" 2>/dev/null) <($emu "$dir/qtf" "${args[@]}" 2>/dev/null) >/dev/null; then
      echo "$1: greedy text of $(basename "$qllm") with sampled attention differs from the native build" >&2
      return 1
    fi
    echo "$1: greedy text of $(basename "$qllm") with sampled attention (64 draws) identical to x86"
  fi
}

run_cortex_m7() {
  local dir="$root/build-cross-cortex-m7"
  configure_and_build cortex-m7 "$root/tools/firmware" cortex-m7.cmake
  echo "== cortex-m7: firmware under qemu-system-arm (mps2-an500)"
  ctest --test-dir "$dir" --output-on-failure
  echo "== cortex-m7: sizes in bytes (arm-none-eabi-size)"
  arm-none-eabi-size "$dir/app.elf"
  arm-none-eabi-size "$dir/qtf/engine/libqtf_core.a" |
    awk 'NR > 1 { t += $1; d += $2; b += $3 } END { printf "libqtf_core.a: text %d data %d bss %d\n", t, d, b }'
}

run_x86_cpu() {  # qemu_cpu expected_variant
  local cpu=$1 want=$2 emu="qemu-x86_64 -cpu $1" out
  for t in kernels/test_kernels quantum/test_quantum; do
    [ -x "$root/build/tests/$t" ] || { echo "x86-$cpu: no native build/tests/$t" >&2; return 1; }
  done
  echo "== x86-$cpu: kernel tests under $emu (less test_kernels' 3 slowest float cases)"
  # TCG prints a warning per CPUID feature it cannot emulate (pcid, x2apic, ...): not ours, dropped.
  out=$($emu "$root/build/tests/kernels/test_kernels" --test-case-exclude="$slow_float" 2>&1 | grep -v "TCG doesn't support") || {
    echo "$out" >&2; echo "x86-$cpu: test_kernels failed" >&2; return 1; }
  if ! grep -q "simd_arch() = $want;" <<<"$out"; then
    grep 'simd_arch' <<<"$out" >&2
    echo "x86-$cpu: run-time dispatch did not pick $want" >&2
    return 1
  fi
  grep -o 'simd_arch() = .*' <<<"$out"
  $emu "$root/build/tests/quantum/test_quantum" >/dev/null 2>&1 || {
    echo "x86-$cpu: test_quantum failed" >&2; return 1; }
  for model in "$root"/models/*.qtf; do
    local args=(run -m "$model" -p "ROMEO:" -n 64 --temp 0 -q)
    if ! diff <("$root/build/qtf" "${args[@]}" 2>/dev/null) <($emu "$root/build/qtf" "${args[@]}" 2>/dev/null) >/dev/null; then
      echo "x86-$cpu: greedy text of $(basename "$model") differs from the native run" >&2
      return 1
    fi
  done
  echo "x86-$cpu: kernel and quantum tests pass, greedy text of every shipped model identical ($want)"
}

run_x86_cpus() {
  # qemu 7.2's TCG emulates up to AVX2 (no AVX-512), so these are the two older CPU classes we can make.
  # Run side by side (2 cores); each log is printed whole once both end.
  local a b rc=0 log_a log_b
  log_a=$(mktemp); log_b=$(mktemp)
  run_x86_cpu qemu64 sse2 >"$log_a" 2>&1 & a=$!
  run_x86_cpu Haswell avx2 >"$log_b" 2>&1 & b=$!
  wait $a || rc=1
  wait $b || rc=1
  cat "$log_a" "$log_b"
  rm -f "$log_a" "$log_b"
  return $rc
}

case "${1:-all}" in
  aarch64) run_linux aarch64 aarch64-linux-gnu.cmake ;;
  armv7) run_linux armv7 armv7-linux-gnueabihf.cmake ;;
  cortex-m7) run_cortex_m7 ;;
  x86-cpus) run_x86_cpus ;;
  all)
    run_x86_cpus
    run_linux aarch64 aarch64-linux-gnu.cmake
    run_linux armv7 armv7-linux-gnueabihf.cmake
    run_cortex_m7
    ;;
  *)
    echo "usage: $0 [aarch64|armv7|cortex-m7|x86-cpus|all]" >&2
    exit 2
    ;;
esac
echo "test_cross.sh: ${1:-all} passed"
