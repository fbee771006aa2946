#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demo on 2 MPI ranks with 4-bit
# adaptive (ALQ) quantization on the wire (see README). Extra arguments go to `saddle demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
exec mpirun -np 2 "${mpi_flags[@]}" ./build/cli/saddle demo --quantizer alq --bits 4 --out runs/demo "$@"
