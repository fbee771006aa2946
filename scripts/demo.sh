#!/usr/bin/env bash
# The main job: installs what is missing, builds, and trains a WGAN-GP on Fashion-MNIST on 2 MPI
# ranks with qgenx and 4-bit adaptive (ALQ) quantization on the wire (see README). Extra arguments
# go to `saddle demo` (e.g. --iters 1000, --quantizer none for the fp32 baseline).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
exec mpirun -np 2 "${mpi_flags[@]}" ./build/cli/saddle demo --out runs/demo "$@"
