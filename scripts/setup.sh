#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and run saddle, then configures and
# builds it. Safe to run again: it installs only what is missing and builds incrementally.
# Sourced by scripts/demo.sh and scripts/test.sh.
#
#   bash scripts/setup.sh                # Debian's LibTorch 1.13 (CPU) -> ./build
#   bash scripts/setup.sh --torch pip    # the PyPI torch wheel's LibTorch (2.11, CUDA 13) in a
#                                        # virtual environment, CUDA kernels and NCCL -> ./build-cuda
#
# The wheel goes to $SADDLE_VENV (default ~/.cache/saddle/torch-2.11.0), created once per machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

flavour=debian
if [ "${1:-}" = "--torch" ]; then
  flavour=${2:?"--torch needs debian or pip"}
  shift 2
fi
case $flavour in debian|pip) ;; *) echo "setup: unknown --torch '$flavour' (expected debian or pip)" >&2; exit 2 ;; esac

packages=(build-essential cmake ninja-build ccache pkg-config
          libtorch-dev libopenblas0-pthread libopenmpi-dev openmpi-bin
          libfmt-dev libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
          zlib1g-dev libstb-dev dataset-fashion-mnist
          # experiments/*.py, their figures, and the notebooks the test suite executes headless
          python3 python3-matplotlib python3-pandas python3-ipykernel jupyter-nbconvert
          # scripts/cluster.sh: network namespaces and tc rate limits (the emulated-cluster tests)
          iproute2)
[ "$flavour" = pip ] && packages+=(python3-venv)
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
if [ "$flavour" = debian ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j "$jobs"
  exit 0
fi

# The wheel's LibTorch. torch 2.11.0 on PyPI is built for CUDA 13.0, the toolkit under
# /usr/local/cuda that compiles saddle's own kernels.
torch_version=2.11.0
venv=${SADDLE_VENV:-$HOME/.cache/saddle/torch-$torch_version}
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
  echo "setup: installing torch==$torch_version into $venv (a one-time download of about 3 GB)"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$torch_version"
fi
prefix=$("$venv/bin/python" -W ignore -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
cuda_args=()
if [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda_args=(-DSADDLE_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  export PATH=/usr/local/cuda/bin:$PATH
else
  echo "setup: no CUDA toolkit in /usr/local/cuda: building without saddle's CUDA kernels"
fi
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$prefix" "${cuda_args[@]}"
cmake --build build-cuda -j "$jobs"
