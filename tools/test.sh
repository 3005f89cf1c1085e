#!/usr/bin/env bash
# The one test command: installs what is missing, builds, and runs every test. CI (.ci/run) runs exactly
# this. Stages (each prints its time):
#   1. native Release build (engine, qtf, tests, benchmarks) and all ctest tests
#   2. the Python reference's unit tests (Debian's torch under /usr/bin/python3)
#   3. ASan+UBSan build running the whole ctest suite; ThreadSanitizer on concurrent contexts
#   4. fuzz smoke: replay the seed corpus, then fuzz each harness briefly (clang, libFuzzer)
#   5. cross targets: aarch64 and armv7 under qemu-user (NEON), Cortex-M7 firmware under qemu-system-arm
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
stage() { echo; echo "=== [$((SECONDS - start)) s] $*"; }

stage "setup"
tools/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

stage "native build and tests"
# Every option this stage needs is set here, so a build/ configured earlier with other options (by
# tools/demo.sh, or by hand) is reconfigured rather than reused as it is; a run with no tests fails.
cmake -S . -B "${QTF_BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release -DQTF_WERROR=ON -DQTF_BUILD_TESTS=ON -DQTF_BUILD_BENCH=ON \
  -DQTF_BUILD_TOOLS=ON -DQTF_BUILD_SHARED=ON -DQTF_NATIVE=OFF -DQTF_SANITIZE=
[ "${QTF_CONFIGURE_ONLY:-0}" = 1 ] && exit 0  # tests/repo/check_readme_order.sh: the configure step alone
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure --no-tests=error -j"$jobs"

stage "Python reference tests"
/usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'

stage "sanitizers"
tools/sanitize.sh address
tools/sanitize.sh thread

stage "fuzz smoke"
QTF_FUZZ_SMOKE_SECONDS=${QTF_FUZZ_SMOKE_SECONDS:-6} tools/fuzz.sh smoke

stage "cross targets under qemu"
tools/cross/test_cross.sh all

stage "done"
echo "tools/test.sh: all stages passed in $((SECONDS - start)) s"
