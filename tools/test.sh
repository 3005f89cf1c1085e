#!/usr/bin/env bash
# The one test command: installs what is missing, builds, and runs every test (native C++ tests,
# the Python reference tests, and the cross targets under qemu). CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
if [ -f tools/train/test_reference.py ]; then
  echo "== Python reference tests"
  /usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'
fi
if [ -x tools/cross/test_cross.sh ]; then
  echo "== cross targets under qemu"
  tools/cross/test_cross.sh all
fi
echo "tools/test.sh: all tests passed"
