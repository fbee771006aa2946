#!/usr/bin/env bash
# Builds saddle and runs the whole test suite (unit tests and the MPI tests under mpirun), then
# builds examples/custom_game.cpp as a project of its own against the installed package.
#   bash scripts/test.sh                # against Debian's LibTorch 1.13 (CPU), in ./build
#   bash scripts/test.sh --torch pip    # against the PyPI wheel's LibTorch 2.11 (CUDA), ./build-cuda
# Other arguments go to ctest (e.g. -R Codec).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
flavour=debian
if [ "${1:-}" = "--torch" ]; then
  flavour=${2:?"--torch needs debian or pip"}
  shift 2
fi
bash scripts/setup.sh --torch "$flavour"
build=build; [ "$flavour" = pip ] && build=build-cuda
# OpenMPI refuses to run as root unless told; the MPI tests oversubscribe the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
(cd "$build" && ctest --output-on-failure -j "$(nproc)" "$@")
bash scripts/outside-project.sh "$build"
