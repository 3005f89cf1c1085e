#!/usr/bin/env bash
# The README's two commands in the README's order share build/: tools/demo.sh's configure must not leave
# a cache under which tools/test.sh's configure builds no tests (ctest would say "No tests were found"
# and the cross stage would miss the native test binaries). Runs both configure steps alone on a
# scratch build dir and counts the tests ctest then knows.
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export QTF_BUILD_DIR="$tmp/build" QTF_CONFIGURE_ONLY=1
"$src/tools/demo.sh" >/dev/null
"$src/tools/test.sh" >/dev/null
n=$(ctest --test-dir "$tmp/build" -N | sed -n 's/^Total Tests: //p')
echo "tests known after demo.sh then test.sh configure: ${n:-0}"
[ "${n:-0}" -gt 0 ]
