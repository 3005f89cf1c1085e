#!/usr/bin/env bash
# Installs the Python package with the standard tools the Debian-friendly way (a venv that sees Debian's
# numpy; --no-build-isolation: no download of setuptools) from a copy of python/, then uses it from
# outside the source tree.   usage: pip_install.sh SOURCE_DIR WORK_DIR LIBQTF
set -euo pipefail
src=$1 work=$2 lib=$3
rm -rf "$work" && mkdir -p "$work"
cp -r "$src/python" "$work/pkg"
/usr/bin/python3 -m venv --system-site-packages --without-pip "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-cache-dir --no-build-isolation --no-index --no-deps "$work/pkg"
cd "$work"
QTF_LIBRARY=$lib "$work/venv/bin/python" - "$src/models/shakespeare-qtf.qtf" <<'PY'
import os, sys, qtf
assert os.path.realpath(qtf.__file__).startswith(os.path.realpath(sys.prefix)), qtf.__file__  # the installed copy
m = qtf.Model(sys.argv[1])
print("installed qtf", qtf.__version__, "from", os.path.dirname(qtf.__file__), "using", qtf.library_path())
print("text:", repr(m.generate("ROMEO:", max_tokens=16, temperature=0).text))
PY
