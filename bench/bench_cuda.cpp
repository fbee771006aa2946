// The GPU path (every case skips, saying why, without a CUDA device). Run on the GPU machine:
//   ./bench/saddle_bench --benchmark_filter=Cuda --benchmark_repetitions=5
//   --benchmark_report_aggregates_only
// * CudaCopy: a device-to-device copy of the 16 MiB input, the bandwidth yardstick.
// * CudaEncode/<q>, CudaDecode/<q>/K<k>: the fused codec kernels on 4M floats (bucket 1024; the
//   encoder is the default register kernel); CudaEncode/<q>/block the block kernel, which
//   encodes the buckets the register kernel does not take (codec_kernels.h).
//   Counter vs_copy is a call's input bytes per second over the copy's, measured in the same
//   process (launches and waits included), kernel_vs_copy the same for the kernel's own GPU time
//   (target for quantize+pack and decode+accumulate: >= 0.5).
// * CudaWganGp/<precision>: one extra-adam iteration of WGAN-GP DCGAN-32 (64 filters, batch 64)
//   on the device as `saddle solve` runs it (the operator replayed as a CUDA graph, cuDNN's
//   autotuner on); /eager the same without the graph, the baseline. CudaWganGpOperator is one
//   operator evaluation; CudaExchangeCost the encode + decode of that game's operator (4-bit ALQ)
//   as a fraction of one operator evaluation (target <= 0.05).
// * CudaWganGpProfile/<variant> (LibTorch 2.x): where an iteration's time goes, from LibTorch's
//   profiler (Kineto, CUPTI) over 10 iterations: kernels per iteration, GPU busy time, the CPU's
//   time in kernel launches and in calls that wait for the device; the top kernels and CUDA calls
//   are printed.
// * CudaEnergyRead: what a read of the board's energy counter costs the runner, which asks four
//   times an iteration on a GPU: the meter answers from its sampling thread (the driver's own
//   read took 3.3 ms of CPU on an H200, more than a graphed WGAN-GP iteration's phases).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "saddle/device.h"
#include "saddle/games/wgan_gp.h"
#include "saddle/precision.h"
#include "saddle/quant/codec.h"
#include "saddle/run/energy.h"
#include "saddle/solver.h"

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace {

using saddle::Codec;
using saddle::CodecOptions;

constexpr int64_t kN = int64_t{1} << 22;
const torch::Device kGpu(torch::kCUDA, 0);

bool skip_without_gpu(benchmark::State& state) {
  if (saddle::cuda_device_count() > 0) return false;
  state.SkipWithError(saddle::cuda_built() ? "no CUDA device is visible"
                                           : "this build has no CUDA support");
  return true;
}

#if TORCH_VERSION_MAJOR >= 2
// What `fn` did on the CPU and the GPU, recorded by LibTorch's profiler (Kineto, CUPTI).
std::unique_ptr<torch::autograd::profiler::ProfilerResult> profiled(
    const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const std::set<ActivityType> activities = {ActivityType::CPU, ActivityType::CUDA};
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  fn();
  saddle::synchronize(kGpu);
  return prof::disableProfiler();
}

// The median duration in microseconds of the GPU activities (kernels, copies) whose name contains
// `part`, over 20 calls of `fn`; 0 when there was none.
double median_device_us(const std::function<void()>& fn, const std::string& part) {
  const auto result = profiled([&] {
    for (int i = 0; i < 20; ++i) fn();
  });
  std::vector<double> us;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CUDA && e.name().find(part) != std::string::npos)
      us.push_back(static_cast<double>(e.durationNs()) * 1e-3);
  }
  if (us.empty()) return 0.0;
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}
#endif

const torch::Tensor& device_input() {
  static const torch::Tensor v = [] {
    torch::manual_seed(0);
    return torch::randn({kN}).to(kGpu);
  }();
  return v;
}

// Input bytes per second of a device-to-device copy of the input, best of a few rounds.
double copy_rate() {
  static const double rate = [] {
    torch::Tensor dst = torch::empty_like(device_input());
    double best = 0;
    for (int round = 0; round < 20; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      dst.copy_(device_input());
      saddle::synchronize(kGpu);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, kN * 4.0 / s);
    }
    return best;
  }();
  return rate;
}

#if TORCH_VERSION_MAJOR >= 2
// The device-to-device copy of the input on the GPU alone (the DMA's time, no launch or wait).
double copy_device_us() {
  static const double us = [] {
    torch::Tensor dst = torch::empty_like(device_input());
    return median_device_us([&] { dst.copy_(device_input()); }, "Memcpy DtoD");
  }();
  return us;
}
#endif

// Counters kernel_us (the codec kernel's own GPU time, median of 20, from the profiler) and
// kernel_vs_copy (the copy's GPU time over it: the target's ratio without the launches and the
// waits of a call, which do not grow with the vector).
void report_kernel(benchmark::State& state, const std::function<void()>& call,
                   const std::string& kernel) {
#if TORCH_VERSION_MAJOR >= 2
  // Under Nsight Compute, which takes CUPTI for itself (scripts/gpu-measure.sh sets this).
  if (std::getenv("SADDLE_BENCH_NO_PROFILER") != nullptr) return;
  const double us = median_device_us(call, kernel);
  if (us <= 0) return;
  state.counters["kernel_us"] = us;
  state.counters["kernel_vs_copy"] = copy_device_us() / us;
#endif
}

void report(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kN * 4);
  state.counters["vs_copy"] =
      benchmark::Counter(state.iterations() * kN * 4.0 / copy_rate(), benchmark::Counter::kIsRate);
}

void BM_CudaCopy(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  torch::Tensor dst = torch::empty_like(device_input());
  for (auto _ : state) {
    dst.copy_(device_input());
    saddle::synchronize(kGpu);
  }
  report(state);
}

Codec make_codec(const std::string& quantizer,
                 saddle::CudaEncoder encoder = saddle::CudaEncoder::kRegister) {
  Codec codec(CodecOptions().quantizer(quantizer).bits(4).bucket_size(1024).cuda_encoder(encoder));
  if (codec.adaptive()) codec.adapt(codec.statistics(device_input().slice(0, 0, 1 << 20)));
  return codec;
}

void BM_CudaEncode(benchmark::State& state, const std::string& quantizer,
                   saddle::CudaEncoder encoder) {
  if (skip_without_gpu(state)) return;
  const Codec codec = make_codec(quantizer, encoder);
  uint64_t seed = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(codec.encode(device_input(), seed++, 0).data_ptr());
    saddle::synchronize(kGpu);
  }
  report(state);
  report_kernel(
      state, [&] { codec.encode(device_input(), seed++, 0); }, "encode_");
}

void BM_CudaDecode(benchmark::State& state, const std::string& quantizer, int k) {
  if (skip_without_gpu(state)) return;
  const Codec codec = make_codec(quantizer);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < k; ++r) parts.push_back(codec.encode(device_input(), 1, r));
  const torch::Tensor all = torch::cat(parts);
  std::vector<torch::Tensor> messages;
  for (int r = 0; r < k; ++r)
    messages.push_back(all.narrow(0, r * parts[0].numel(), parts[0].numel()));
  torch::Tensor out = torch::empty_like(device_input());
  for (auto _ : state) {
    codec.decode_average(messages, out, 1.0f / k);
    saddle::synchronize(kGpu);
  }
  report(state);
  report_kernel(
      state, [&] { codec.decode_average(messages, out, 1.0f / k); }, "decode_");
}

std::unique_ptr<saddle::WganGpGame> make_game(bool cuda_graphs = true) {
  saddle::GameOptions options;
  options.cuda_graphs = cuda_graphs;
  options.filters = 64;
  options.batch = 64;
  options.device = kGpu;
  saddle::RealBatches noise = [](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
  };
  return std::make_unique<saddle::WganGpGame>(options, noise, 1);
}

// How the iteration runs: kDefault as `saddle solve` runs it on a GPU (CUDA graph, cuDNN's
// autotuner), kEager without the graph.
enum class WganVariant { kDefault, kEager };

// The game, solver and oracle of one benchmark, warmed up (cuDNN autotuning, allocator, capture).
struct WganIteration {
  std::unique_ptr<saddle::WganGpGame> game;
  std::unique_ptr<saddle::Solver> solver;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  saddle::Oracle oracle;
  bool was_autotuning = at::globalContext().benchmarkCuDNN();

  WganIteration(saddle::Precision precision, WganVariant variant)
      : game(make_game(variant == WganVariant::kDefault)) {
    at::globalContext().setBenchmarkCuDNN(true);
    solver = saddle::make_solver("extra-adam", game->params(), game->players(),
                                 saddle::SolverOptions().lr(1e-4));
    oracle = [this, precision]() {
      saddle::AutocastScope autocast(precision, kGpu);
      return game->operator_at(gen);
    };
    if (precision == saddle::Precision::kFp16) game->set_loss_scale(1024.0);
    for (int i = 0; i < 3; ++i) solver->step(oracle);
    saddle::synchronize(kGpu);
  }
  ~WganIteration() { at::globalContext().setBenchmarkCuDNN(was_autotuning); }
  WganIteration(const WganIteration&) = delete;
  WganIteration& operator=(const WganIteration&) = delete;
};

void BM_CudaWganGp(benchmark::State& state, saddle::Precision precision, WganVariant variant) {
  if (skip_without_gpu(state)) return;
  WganIteration it(precision, variant);
  for (auto _ : state) {
    it.solver->step(it.oracle);
    saddle::synchronize(kGpu);
  }
  state.counters["graph_captures"] = static_cast<double>(it.game->graph_captures());
}

#if TORCH_VERSION_MAJOR >= 2
// Totals of the profiled events with one name.
struct EventTotal {
  int64_t count = 0;
  double ms = 0.0;
};

void print_top(const char* what, const std::map<std::string, EventTotal>& totals, int iterations) {
  std::vector<std::pair<std::string, EventTotal>> sorted(totals.begin(), totals.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(stderr, "  top %s per iteration (count, ms):\n", what);
  for (size_t i = 0; i < sorted.size() && i < 12; ++i) {
    std::fprintf(stderr, "    %7.1f %8.3f  %.110s\n",
                 static_cast<double>(sorted[i].second.count) / iterations,
                 sorted[i].second.ms / iterations, sorted[i].first.c_str());
  }
}

void BM_CudaWganGpProfile(benchmark::State& state, WganVariant variant) {
  if (skip_without_gpu(state)) return;
  WganIteration it(saddle::Precision::kFp32, variant);
  constexpr int kIterations = 10;
  for (auto _ : state) {
    double wall_ms = 0;
    const auto result = profiled([&] {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kIterations; ++i) it.solver->step(it.oracle);
      saddle::synchronize(kGpu);
      wall_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    });
    std::map<std::string, EventTotal> kernels, runtime;
    std::vector<std::pair<uint64_t, uint64_t>> busy;  // GPU activity intervals
    int64_t launches = 0, kernel_count = 0;
    double launch_ms = 0, wait_ms = 0;
    for (const auto& e : result->events()) {
      const std::string name = e.name();
      const double ms = static_cast<double>(e.durationNs()) * 1e-6;
      if (e.deviceType() == c10::DeviceType::CUDA) {
        busy.emplace_back(e.startNs(), e.endNs());
        EventTotal& t = kernels[name];
        ++t.count;
        t.ms += ms;
        if (name.rfind("Memcpy", 0) != 0 && name.rfind("Memset", 0) != 0) ++kernel_count;
      } else if (name.rfind("cu", 0) == 0) {  // the runtime's cuda* and the driver's cu* calls
        EventTotal& t = runtime[name];
        ++t.count;
        t.ms += ms;
        if (name.find("Launch") != std::string::npos) {
          ++launches;
          launch_ms += ms;
        }
        if (name.find("Synchronize") != std::string::npos || name == "cudaMemcpy" ||
            name == "cudaMemcpyAsync") {
          wait_ms += ms;
        }
      }
    }
    std::sort(busy.begin(), busy.end());
    double busy_ms = 0;
    uint64_t open = 0, close = 0;
    for (const auto& [start, end] : busy) {
      if (start > close) {
        busy_ms += static_cast<double>(close - open) * 1e-6;
        open = start;
        close = end;
      } else {
        close = std::max(close, end);
      }
    }
    busy_ms += static_cast<double>(close - open) * 1e-6;
    std::fprintf(stderr,
                 "CudaWganGpProfile/%s: %.2f ms per iteration (profiled), GPU busy %.2f ms\n",
                 variant == WganVariant::kDefault ? "graph" : "eager", wall_ms / kIterations,
                 busy_ms / kIterations);
    print_top("GPU activities", kernels, kIterations);
    print_top("CUDA calls", runtime, kIterations);
    state.counters["ms_per_iter"] = wall_ms / kIterations;
    state.counters["gpu_busy_ms"] = busy_ms / kIterations;
    state.counters["kernels"] = static_cast<double>(kernel_count) / kIterations;
    state.counters["launches"] = static_cast<double>(launches) / kIterations;
    state.counters["launch_ms"] = launch_ms / kIterations;
    state.counters["wait_ms"] = wait_ms / kIterations;
  }
}
#endif

void BM_CudaWganGpOperator(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const bool was_autotuning = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(true);  // as `saddle solve` runs on a GPU
  auto game = make_game();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  benchmark::DoNotOptimize(game->operator_at(gen));
  for (auto _ : state) {
    benchmark::DoNotOptimize(game->operator_at(gen));
    saddle::synchronize(kGpu);
  }
  at::globalContext().setBenchmarkCuDNN(was_autotuning);
}

// One answer of the board's energy meter: the runner asks twice per oracle call on a GPU (joules
// per phase), so its latency is a cost of every iteration there.
void BM_CudaEnergyRead(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  saddle::EnergyProbe probe = saddle::open_energy_meter(kGpu);
  if (!probe.meter) {
    state.SkipWithError(("no energy counter: " + probe.unavailable).c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(probe.meter->joules());
}

// Encode + decode of the game's operator as a fraction of one operator evaluation.
void BM_CudaExchangeCost(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  auto game = make_game();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const torch::Tensor f = game->operator_at(gen);
  Codec codec(CodecOptions().quantizer("alq").bits(4));
  codec.adapt(codec.statistics(f));
  torch::Tensor out = torch::empty_like(f);
  auto time = [&](auto&& fn, int rounds) {
    fn();
    saddle::synchronize(kGpu);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) fn();
    saddle::synchronize(kGpu);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / rounds;
  };
  double ratio = 0;
  for (auto _ : state) {
    const double op = time([&] { game->operator_at(gen); }, 20);
    const double codec_time = time(
        [&] {
          torch::Tensor m = codec.encode(f, 1, 0);
          codec.decode_average({m}, out, 1.0f);
        },
        50);
    ratio = codec_time / op;
    state.SetIterationTime(op);
  }
  state.counters["encode_decode_vs_operator"] = ratio;
}

bool register_cuda_benchmarks() {
  benchmark::RegisterBenchmark("CudaCopy", BM_CudaCopy)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  for (const char* q : {"none", "bf16", "qsgd", "nuq", "alq"}) {
    benchmark::RegisterBenchmark((std::string("CudaEncode/") + q).c_str(), BM_CudaEncode,
                                 std::string(q), saddle::CudaEncoder::kRegister)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    if (std::string(q) == "qsgd" || std::string(q) == "alq") {
      benchmark::RegisterBenchmark((std::string("CudaEncode/") + q + "/block").c_str(),
                                   BM_CudaEncode, std::string(q), saddle::CudaEncoder::kBlock)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
    for (int k : {1, 2, 8}) {
      benchmark::RegisterBenchmark(
          (std::string("CudaDecode/") + q + "/K" + std::to_string(k)).c_str(), BM_CudaDecode,
          std::string(q), k)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  const std::pair<const char*, WganVariant> variants[] = {{"", WganVariant::kDefault},
                                                          {"/eager", WganVariant::kEager}};
  for (auto precision :
       {saddle::Precision::kFp32, saddle::Precision::kBf16, saddle::Precision::kFp16}) {
    for (const auto& [suffix, variant] : variants) {
      benchmark::RegisterBenchmark(
          (std::string("CudaWganGp/") + saddle::precision_name(precision) + suffix).c_str(),
          BM_CudaWganGp, precision, variant)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(2.0);
    }
  }
#if TORCH_VERSION_MAJOR >= 2
  for (const auto& [name, variant] :
       {std::pair{"graph", WganVariant::kDefault}, std::pair{"eager", WganVariant::kEager}}) {
    benchmark::RegisterBenchmark((std::string("CudaWganGpProfile/") + name).c_str(),
                                 BM_CudaWganGpProfile, variant)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  }
#endif
  benchmark::RegisterBenchmark("CudaWganGpOperator", BM_CudaWganGpOperator)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("CudaEnergyRead", BM_CudaEnergyRead)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("CudaExchangeCost", BM_CudaExchangeCost)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(3);
  return true;
}

const bool registered = register_cuda_benchmarks();

}  // namespace
