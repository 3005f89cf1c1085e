#!/usr/bin/env bash
# Installs the Debian packages qtf needs, only those missing. Idempotent.
#   tools/setup.sh            build + test deps (native, cross compilers, qemu, torch, qutip, the HTTP
#                             server's libraries, node and the OpenAI Node client for the server's test)
#   tools/setup.sh --minimal  just what building and running the engine needs
# The OpenAI client (npm's `openai`) goes into $QTF_NODE_DIR (default build/node), where ctest's
# server_openai_node looks; without the npm registry that test is skipped with a message.
set -euo pipefail
minimal=0
[ "${1:-}" = "--minimal" ] && minimal=1

pkgs=(cmake g++ make libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev)
if [ $minimal = 0 ]; then
  pkgs+=(python3-torch python3-qutip python3-numpy python3-tqdm
         libcpp-httplib-dev nlohmann-json3-dev curl pkg-config python3-pip python3-venv
         g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user
         gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
         clang libclang-rt-14-dev)
  # Debian's nodejs and npm, unless a node with npm is installed already (e.g. NodeSource's, which
  # conflicts with Debian's npm package).
  command -v npm >/dev/null || pkgs+=(nodejs npm)
fi

# The OpenAI Node client for tests/server/openai_client.js, pinned to a major version.
install_openai_client() {
  [ $minimal = 0 ] && command -v npm >/dev/null || return 0
  local dir=${QTF_NODE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build/node}
  [ -f "$dir/node_modules/openai/package.json" ] && return 0
  mkdir -p "$dir"
  if npm install --prefix "$dir" --no-audit --no-fund --silent openai@4 >/dev/null 2>&1; then
    echo "setup: openai $(node -p "require('$dir/node_modules/openai/package.json').version") in $dir"
  else
    echo "setup: could not install the openai npm package into $dir (no registry?); server_openai_node will be skipped"
  fi
}
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
  install_openai_client
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
install_openai_client
