#!/usr/bin/env bash
# Sanitizer runs (docs/reliability.md), each in its own build dir, Google Benchmark off:
#   tools/sanitize.sh [address]   ASan + UBSan (build-asan): the whole ctest suite
#   tools/sanitize.sh thread      ThreadSanitizer (build-tsan): concurrent contexts over one model
#   tools/sanitize.sh all         both
# Any sanitizer report fails the run (-fno-sanitize-recover=all, halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-address}
jobs=$(nproc 2>/dev/null || echo 2)

# Warnings are errors here as in the main build; third-party headers are SYSTEM includes, and the one
# known false positive inside them (GCC 12's -Wmaybe-uninitialized in the AVX-512 intrinsics) is
# silenced for that file only (engine/kernels/CMakeLists.txt).
# -O1 -g (the sanitizers' own advice) rather than RelWithDebInfo's -O2 -g: on the 2-core CI machine the
# ASan build was most of the stage's 680 s at -O2; -O1 compiles the heaviest files in half the time.
# The ASan build also runs the avxvnni variant's kernels where the CPU has AVX-512 VNNI but not AVX-VNNI
# (the development machine's AMD EPYC): QTF_AVXVNNI_STANDIN compiles them with the EVEX vpdpbusd, the
# same operation (CMakeLists.txt); the native build keeps the VEX one that ships.
configure() {  # build dir, sanitizers, extra cmake arguments
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" -DQTF_SANITIZE="$2" -DQTF_BUILD_BENCH=OFF \
    -DQTF_WERROR=ON "${@:3}" >/dev/null
}

address() {
  local t0=$SECONDS
  configure build-asan address,undefined -DQTF_AVXVNNI_STANDIN=ON
  cmake --build build-asan -j"$jobs"
  # test_noalloc is a normal part of this run: its -Wl,--wrap=malloc wrappers call through to the
  # sanitizer's malloc, so it both checks "no allocation while decoding" and runs under ASan.
  # The sweeps over model files take the fixtures (every block option), not the shipped models as well:
  # those run under ASan in the greedy, CLI and server tests.
  QTF_TEST_MODELS=fixtures ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
  echo "tools/sanitize.sh address: ASan+UBSan suite passed in $((SECONDS - t0)) s"
}

thread() {
  local t0=$SECONDS
  configure build-tsan thread
  cmake --build build-tsan -j"$jobs" --target test_threads
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --test-dir build-tsan --output-on-failure -R '^test_threads$'
  echo "tools/sanitize.sh thread: ThreadSanitizer run passed in $((SECONDS - t0)) s"
}

case "$mode" in
  address) address ;;
  thread) thread ;;
  all) address; thread ;;
  *) echo "usage: tools/sanitize.sh [address|thread|all]" >&2; exit 2 ;;
esac
