#!/usr/bin/env bash
# What a user does with saddle in a project of their own: install it, copy
# examples/custom_game.cpp next to examples/standalone/CMakeLists.txt, find_package(saddle), build
# and run. Usage: bash scripts/outside-project.sh BUILD_DIR (an already built tree).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:?"usage: outside-project.sh BUILD_DIR"}
prefix=$(pwd)/$build/install
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cp examples/custom_game.cpp examples/standalone/CMakeLists.txt "$work/"
# LibTorch's CMake prefix (the folder above Torch/ and Caffe2/), as saddle was built with.
torch_prefix=$(dirname "$(sed -n 's/^Torch_DIR:PATH=//p' "$build/CMakeCache.txt")")
cuda=$(sed -n 's/^CMAKE_CUDA_COMPILER:FILEPATH=//p' "$build/CMakeCache.txt")
args=("-DCMAKE_PREFIX_PATH=$prefix;$torch_prefix")
[ -n "$cuda" ] && args+=("-DCMAKE_CUDA_COMPILER=$cuda")
cmake -S "$work" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${args[@]}" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
out=$("$work/build/my_game" 4 alq)
echo "outside project ($build): $out"
echo "$out" | grep -q "distance_sq" || { echo "outside project: unexpected output" >&2; exit 1; }
