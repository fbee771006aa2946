#!/usr/bin/env bash
# Builds saddle and runs the whole test suite (unit tests and the MPI tests under mpirun).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# OpenMPI refuses to run as root unless told; the MPI tests oversubscribe the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd build && ctest --output-on-failure -j "$(nproc)" "$@"
