#!/usr/bin/env bash
# Installs the Debian packages qtf needs, only those missing. Idempotent.
#   tools/setup.sh            build + test deps (native, cross compilers, qemu, torch, qutip, the HTTP
#                             server's libraries)
#   tools/setup.sh --minimal  just what building and running the engine needs
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
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
