#!/usr/bin/env bash
# The README's GPU figures, measured in one bounded pass on a machine with a CUDA GPU:
#   bash scripts/gpu-measure.sh [BUILD_DIR]        (default build-cuda; OUT=folder for the results)
# Each step runs under `timeout` and logs to $OUT/gpu/STEP.log; a failed step does not stop the
# others. At the end a table of every run's summary.json (wall time, FID, energy) is printed.
#   tests       the GPU tests (Cuda.*, and the device and transport choices), failures in full
#   bench       bench/saddle_bench --benchmark_filter=Cuda: codec kernels against a device copy,
#               WGAN-GP extra-gradient iterations in fp32/bf16/fp16, the exchange's share
#   classifier  the Fashion-MNIST classifier of FID, trained on the GPU
#   wgan-*      one rank, WGAN-GP with extra-adam: fp32 against bf16 (FID, seconds, joules), and
#               fp32 without the CUDA graph
#   two-*       two ranks sharing the GPU, qgenx: fp32 exchange against 4-bit ALQ
#   demo        the README's demo, 2 ranks, --device cuda
#   profile     where the time goes: the steps nsys and ncu, where the machine has the tools
#               (each says so where it does not); the bench's CudaWganGpProfile does the same
#               from LibTorch's profiler
#   nsys        CUDA API calls, kernels and copies over the WGAN-GP iteration and the codec
#               benchmarks
#   ncu         every section over one launch of each codec kernel (both encoders, decode), and
#               its source view (instructions and stalls per line) as ncu-KERNEL.source.csv
# Knobs: SADDLE_DATA_DIR (Fashion-MNIST folder), GPU_MEASURE_STEPS (default: all of the above),
# GPU_MEASURE_ITERS (WGAN-GP iterations of the wgan-* runs, default 600), GPU_MEASURE_PACK=1 (pack
# $OUT/gpu into $OUT/gpu.tar.gz, checkpoints and the classifier left out: one file to bring back
# from a machine that returns few files), GPU_MEASURE_TESTS (gtest filter of the tests step),
# GPU_MEASURE_BENCH (benchmark filter of the bench step, default Cuda).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=$(cd "${1:-${BUILD:-$ROOT/build-cuda}}" && pwd) || { echo "no build directory ${1:-}"; exit 2; }
R=${OUT:-$PWD/gpu-measure}/gpu
DATA=${SADDLE_DATA_DIR:-/usr/share/datasets/fashion-mnist}
STEPS=" ${GPU_MEASURE_STEPS:-tests bench classifier wgan two demo profile} "
ITERS=${GPU_MEASURE_ITERS:-600}
S=$B/cli/saddle
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$R"

want() { [[ "$STEPS" == *" $1 "* || ( "$STEPS" == *" profile "* && " nsys ncu " == *" $1 "* ) ]]; }
# step NAME SECONDS CMD...: CMD under timeout, its output in $R/NAME.log; prints status and its tail.
step() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name: $*"
  timeout -k 5 "$limit" "$@" >"$R/$name.log" 2>&1
  rc=$?
  echo "-- $name: rc=$rc in $((SECONDS - t0)) s"
  ((rc == 0)) || grep -m 8 -E 'error|Error|what\(\)|terminate' "$R/$name.log"
  tail -n 6 "$R/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,power.draw,clocks.sm --format=csv 2>&1
if want tests; then
  step tests 180 "$B/tests/saddle_tests" \
    --gtest_filter="${GPU_MEASURE_TESTS:-Cuda.*:Transport.*:Device.*:Precision.*}"
  grep -E -A12 '^\[ RUN|Failure' "$R/tests.log" | grep -v -E '^\[ +(RUN|OK) ' | head -80
fi
want bench && step bench 150 "$B/bench/saddle_bench" --benchmark_filter="${GPU_MEASURE_BENCH:-Cuda}" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$R/bench.json" --benchmark_out_format=json
want bench && grep -E '_(median|mean)|^Cuda.*ERROR' "$R/bench.log"  # the table, in this output too
want classifier && step classifier 120 "$S" classifier --device cuda --data-dir "$DATA" \
  --out "$R/classifier.pt"
if want wgan; then
  # fp32 and bf16 as `saddle solve` runs them (the operator replayed as a CUDA graph), and fp32
  # evaluated eagerly (--cuda-graphs off), the baseline of the graphs.
  for p in fp32 bf16 fp32-eager; do
    graphs=on
    [ "$p" = fp32-eager ] && graphs=off
    step "wgan-$p" 120 "$S" solve --game wgan-gp --solver extra-adam --device cuda \
      --precision "${p%-eager}" --cuda-graphs "$graphs" --iters "$ITERS" --eval-every $((ITERS / 2)) \
      --fid-samples 5000 --classifier "$R/classifier.pt" --data-dir "$DATA" --out "$R/wgan-$p" \
      --overwrite --no-progress
  done
fi
if want two; then
  classifier=()  # FID only where the classifier step ran
  [ -f "$R/classifier.pt" ] && classifier=(--classifier "$R/classifier.pt")
  for q in none alq; do
    step "two-$q" 120 mpirun -np 2 --bind-to none "$S" solve --game wgan-gp --solver qgenx \
      --quantizer "$q" --bits 4 --device cuda --iters 300 --fid-samples 2000 \
      "${classifier[@]}" --data-dir "$DATA" --out "$R/two-$q" --overwrite --no-progress
  done
fi
if want nsys || want ncu; then
  nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
  if ! want nsys; then
    :
  elif [ -n "$nsys" ]; then
    step nsys 150 "$nsys" profile --stats=true --force-overwrite=true -o "$R/profile" \
      "$B/bench/saddle_bench" --benchmark_filter='CudaWganGp/fp32|CudaWganGpOperator|CudaEncode/alq|CudaDecode/alq/K1' \
      --benchmark_min_time=0.5
  else
    echo "== nsys: not on this machine"
  fi
  if ! want ncu; then
    :
  elif [ -n "$ncu" ]; then
    # One launch of each codec kernel, every section (--set full): throughput against the device's
    # peaks, occupancy, where the warps stall; the copy is the yardstick. Each kernel's report is
    # also exported line by line (ncu-KERNEL.source.csv: instructions executed and stall samples
    # per CUDA line and SASS instruction; build with -DCMAKE_CUDA_FLAGS=-lineinfo for the lines).
    # The first launch is profiled: ncu replays it, and the bench runs few iterations under ncu.
    for k in encode_rows_kernel:CudaEncode/alq/real_time encode_kernel:CudaEncode/alq/block \
      decode_fixed_kernel:CudaDecode/alq/K1; do
      name=${k%%:*}
      step "ncu-$name" 60 env SADDLE_BENCH_NO_PROFILER=1 "$ncu" --kernel-name "regex:$name" \
        --launch-skip 0 --launch-count 1 --set full --import-source yes -o "$R/ncu-$name" \
        "$B/bench/saddle_bench" --benchmark_filter="${k#*:}" --benchmark_min_time=0.02s
      timeout 30 "$ncu" --import "$R/ncu-$name.ncu-rep" --page details >"$R/ncu-$name.details.log" 2>&1
      timeout 30 "$ncu" --import "$R/ncu-$name.ncu-rep" --page source --print-source cuda,sass \
        --csv >"$R/ncu-$name.source.csv" 2>&1
      grep -E 'Duration|Throughput|Occupancy|Registers Per|Block Limit|Warp Cycles|Issue Slots|Eligible|Executed Ipc|Executed Instructions  |Hit Rate|Mem Busy|Max Bandwidth|Waves Per SM' \
        "$R/ncu-$name.details.log" | cut -c1-140 | head -40
    done
  else
    echo "== ncu: not on this machine"
  fi
fi
want demo && step demo 150 mpirun -np 2 --bind-to none "$S" demo --device cuda \
  --classifier "$R/classifier.pt" --data-dir "$DATA" --out "$R/demo" --no-progress

echo "== runs"
python3 - "$R" <<'EOF'
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*", "summary.json"))):
    d = json.load(open(f))
    e, s = d.get("energy", {}), d.get("seconds", {})
    print("%-10s %-8s %-5s it=%-5s wall=%7.1fs fid=%-7s compute=%.1fs encode=%.2fs comm=%.2fs "
          "decode=%.2fs bytes=%s graphs=%s energy=%s" % (
              os.path.basename(os.path.dirname(f)), d.get("solver"), d.get("precision"),
              d.get("iterations"), d.get("wall_seconds", 0), "%.1f" % d["fid"] if "fid" in d else "-",
              s.get("compute", 0), s.get("encode", 0), s.get("communicate", 0), s.get("decode", 0),
              d.get("bytes_sent"), d.get("cuda_graph_captures"), json.dumps(e)))
EOF
if [ -n "${GPU_MEASURE_PACK:-}" ]; then
  tar -czf "$R.tar.gz" -C "$(dirname "$R")" --exclude='*.pt' --exclude='*.nsys-rep' --exclude='*.ncu-rep' --exclude='*.sqlite' "$(basename "$R")" && rm -rf "$R" &&
    echo "packed: $R.tar.gz"
fi
