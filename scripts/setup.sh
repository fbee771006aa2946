#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and run saddle, then configures and
# builds it in ./build. Safe to run again: it installs only missing packages and builds
# incrementally. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential cmake ninja-build ccache pkg-config
          libtorch-dev libopenblas0-pthread libopenmpi-dev openmpi-bin
          libfmt-dev libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
          zlib1g-dev libstb-dev dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
