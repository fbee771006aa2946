#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (./build-fuzz) and fuzzes each for SECONDS (default 60),
# starting from the corpus kept in fuzz/corpus/<target> (new inputs go to a scratch folder; the
# repository's corpus is not changed). A crash, a sanitizer report or any exception other than
# saddle::Error fails the run and leaves the input in ./build-fuzz/crash-*.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]      # targets: decode checkpoint datasets
# Long runs (>= 10^7 executions each, see README): bash scripts/fuzz.sh 1200
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode checkpoint datasets)
bash scripts/setup.sh >/dev/null
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
  -DSADDLE_BUILD_FUZZ=ON -DSADDLE_BUILD_TESTS=OFF -DSADDLE_BUILD_BENCH=OFF \
  -DSADDLE_BUILD_EXAMPLES=OFF -DSADDLE_USE_PCH=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/#/saddle_fuzz_}"
export ASAN_OPTIONS=detect_leaks=0
status=0
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  log=build-fuzz/fuzz-$t.log
  rc=0
  (cd build-fuzz && "./fuzz/saddle_fuzz_$t" "$work" "../fuzz/corpus/$t" -max_total_time="$seconds" \
     -print_final_stats=1 -rss_limit_mb=4096 >"../$log" 2>&1) || rc=$?
  rm -rf "$work"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED after ${runs:-?} executions (exit $rc); see $log and build-fuzz/crash-*"
    grep -E "ERROR|SUMMARY|terminate|Test unit written" "$log" | head -n 10
    status=1
  else
    echo "fuzz: $t: ${runs:-?} executions in $seconds s, no crash or sanitizer report"
  fi
done
exit $status
