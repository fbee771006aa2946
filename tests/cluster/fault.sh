#!/usr/bin/env bash
# A fault on an emulated cluster (scripts/cluster.sh) ends the whole job quickly, with one line
# naming the lost rank:
#   fault.sh SADDLE kill   one host's ranks are killed mid-run: every other rank ends within 10 s
#   fault.sh SADDLE cut    one host's link goes down mid-run: the survivors' --rank-timeout (5 s
#                          here) ends every other rank within 10 s of the cut
# More arguments go to `saddle solve` (e.g. --overlap 4: the split all-gather's waits).
# Exits 77 (skipped) where namespaces cannot be made.
set -uo pipefail
saddle="$1"
kind="$2"
shift 2
here=$(cd "$(dirname "$0")" && pwd)
cluster="$here/../../scripts/cluster.sh"
bash "$cluster" --check >/dev/null 2>&1
status=$?
[[ $status -eq 77 ]] && { bash "$cluster" --check; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Long enough that the fault comes mid-run; each iteration exchanges 80 KB over the links.
timeout 60 bash "$cluster" --hosts 3 --rate 1gbit --fault "$kind:2:3" -- \
  "$saddle" solve --game separable --dim 10000 --solver qgenx --iters 100000000 --no-progress \
  --log-level warn --rank-timeout 5 --out "$out/run" "$@" > "$out/log" 2>&1
status=$?
cat "$out/log"
fail() { echo "FAILED: $*"; exit 1; }
[[ $status -ne 0 ]] || fail "the job ended with status 0 after the fault"
[[ $status -ne 124 ]] || fail "the job was still running 60 s after its start"
# Every surviving rank has ended within 10 s (mpirun itself may wait longer for a cut host's
# daemon: OpenMPI's, said by cluster.sh).
line=$(grep -o "surviving ranks ended [0-9.]* s after the fault" "$out/log") ||
  fail "no fault was injected, or the surviving ranks never ended"
seconds=$(awk '{print $4}' <<< "$line")
awk -v s="$seconds" 'BEGIN{exit !(s <= 10)}' || fail "the ranks ended $seconds s after the fault (limit 10)"
if [[ "$kind" == kill ]]; then
  grep -Eq "process rank 2 .*(exited|killed)|rank 2 .*(signal|died|exited)" "$out/log" ||
    fail "no line names rank 2"
else
  grep -q "waited more than 5 s for rank 2" "$out/log" || fail "no line names rank 2"
fi
# Nothing half-written: the survivors' files are whole (each checkpoint, if any, loads as a file
# the writer completed: no temporary files left beside them).
if ls "$out/run" 2>/dev/null | grep -q '\.tmp'; then fail "a temporary file was left in --out"; fi
echo "PASSED: after the $kind, the surviving ranks ended within $seconds s"
