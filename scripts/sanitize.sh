#!/usr/bin/env bash
# The unit and MPI tests built with AddressSanitizer and UndefinedBehaviorSanitizer (Debian's
# LibTorch, -O1 with line tables for the reports, in ./build-asan). Any report fails the run. LibTorch and OpenMPI are
# not instrumented; leak detection is off because both keep allocations until exit.
#   bash scripts/sanitize.sh [ctest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" \
  -DSADDLE_SANITIZE=address,undefined -DSADDLE_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$(nproc)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j "$(nproc)" "$@")
