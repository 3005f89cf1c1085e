#!/usr/bin/env bash
# cmake --install into a fresh prefix, then build the C API example (tools/examples/generate.c) from a
# separate directory against the installed package twice: with find_package(qtf) -> qtf::qtf, and with
# pkg-config. Both programs and the installed qtf tool run on a shipped model.
#   usage: install_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1 build=$2 work=$3
model=$src/models/shakespeare-qtf.qtf
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
ls "$work/prefix/include/qtf.h" "$work/prefix/lib/cmake/qtf/qtfConfig.cmake" >/dev/null

echo "== find_package(qtf)"
cmake -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DQTF_EXAMPLE="$src/tools/examples/generate.c" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" >/dev/null
# ldd's output is read whole first: `ldd | grep -q` under pipefail fails at random when grep exits at
# the first match and ldd dies of SIGPIPE.
libs=$(ldd "$work/consumer/generate")
grep -q "$work/prefix/lib/libqtf.so" <<<"$libs" || { echo "not linked to the installed libqtf.so"; echo "$libs"; exit 1; }
"$work/consumer/generate" "$model" "ROMEO:" 8

echo "== pkg-config qtf"
export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs qtf)
echo "pkg-config --cflags --libs qtf: $flags"
cc "$src/tools/examples/generate.c" $flags -o "$work/generate-pc"
LD_LIBRARY_PATH=$work/prefix/lib "$work/generate-pc" "$model" "ROMEO:" 8

echo "== installed qtf tool"
"$work/prefix/bin/qtf" verify "$model"
echo "install test: passed"
