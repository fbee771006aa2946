// The GPU path (every case skips, saying why, without a CUDA device). Run on the GPU machine:
//   ./bench/saddle_bench --benchmark_filter=Cuda --benchmark_repetitions=5
//   --benchmark_report_aggregates_only
// * CudaCopy: a device-to-device copy of the 16 MiB input, the bandwidth yardstick.
// * CudaEncode/<q>, CudaDecode/<q>/K<k>: the fused codec kernels on 4M floats; counter vs_copy is
//   the kernel's input bytes per second over the copy's, measured in the same process (target for
//   quantize+pack and decode+accumulate: >= 0.5).
// * CudaWganGp/<precision>: one extra-gradient iteration of WGAN-GP DCGAN-32 (64 filters, batch 64)
//   on the device (fp32 also with cuDNN's autotuner, and with the queue drained before every
//   operator evaluation as the pageable uploads did), and CudaWganGpOperator one operator
//   evaluation; CudaExchangeCost the encode + decode of that game's operator (4-bit ALQ) as a
//   fraction of one operator evaluation (target <= 0.05).
// * CudaEnergyRead: one read of the board's NVML energy counter (the runner reads it twice per
//   oracle call on a GPU).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <memory>

#include "saddle/device.h"
#include "saddle/games/wgan_gp.h"
#include "saddle/precision.h"
#include "saddle/quant/codec.h"
#include "saddle/run/energy.h"
#include "saddle/solver.h"

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

Codec make_codec(const std::string& quantizer) {
  Codec codec(CodecOptions().quantizer(quantizer).bits(4).bucket_size(1024));
  if (codec.adaptive()) codec.adapt(codec.statistics(device_input().slice(0, 0, 1 << 20)));
  return codec;
}

void BM_CudaEncode(benchmark::State& state, const std::string& quantizer) {
  if (skip_without_gpu(state)) return;
  const Codec codec = make_codec(quantizer);
  uint64_t seed = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(codec.encode(device_input(), seed++, 0).data_ptr());
    saddle::synchronize(kGpu);
  }
  report(state);
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
}

std::unique_ptr<saddle::WganGpGame> make_game() {
  saddle::GameOptions options;
  options.filters = 64;
  options.batch = 64;
  options.device = kGpu;
  saddle::RealBatches noise = [](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
  };
  return std::make_unique<saddle::WganGpGame>(options, noise, 1);
}

// How the iteration runs besides the default:
// * kCudnnAutotune: cuDNN times its algorithms for each shape once and keeps the fastest;
// * kWaitBeforeDraws: the device queue drains before every operator evaluation, as it did when the
//   game uploaded its draws from pageable memory (the baseline of saddle::to_device).
enum class WganVariant { kDefault, kCudnnAutotune, kWaitBeforeDraws };

void BM_CudaWganGp(benchmark::State& state, saddle::Precision precision, WganVariant variant) {
  if (skip_without_gpu(state)) return;
  const bool was = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(variant == WganVariant::kCudnnAutotune);
  auto game = make_game();
  auto solver = saddle::make_solver("extra-adam", game->params(), game->players(),
                                    saddle::SolverOptions().lr(1e-4));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  saddle::Oracle oracle = [&]() {
    if (variant == WganVariant::kWaitBeforeDraws) saddle::synchronize(kGpu);
    saddle::AutocastScope autocast(precision, kGpu);
    return game->operator_at(gen);
  };
  if (precision == saddle::Precision::kFp16) game->set_loss_scale(1024.0);
  for (int i = 0; i < 3; ++i) solver->step(oracle);  // warm-up: cuDNN autotuning, allocator
  saddle::synchronize(kGpu);
  for (auto _ : state) {
    solver->step(oracle);
    saddle::synchronize(kGpu);
  }
  at::globalContext().setBenchmarkCuDNN(was);
}

void BM_CudaWganGpOperator(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  auto game = make_game();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  benchmark::DoNotOptimize(game->operator_at(gen));
  for (auto _ : state) {
    benchmark::DoNotOptimize(game->operator_at(gen));
    saddle::synchronize(kGpu);
  }
}

// One read of the board's energy counter through NVML: the runner reads it twice per oracle call
// on a GPU (joules per phase), so its latency is a cost of every iteration there.
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
                                 std::string(q))
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    for (int k : {1, 2, 8}) {
      benchmark::RegisterBenchmark(
          (std::string("CudaDecode/") + q + "/K" + std::to_string(k)).c_str(), BM_CudaDecode,
          std::string(q), k)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  const std::pair<const char*, WganVariant> variants[] = {
      {"", WganVariant::kDefault},
      {"/cudnn-autotune", WganVariant::kCudnnAutotune},
      {"/wait-before-draws", WganVariant::kWaitBeforeDraws}};
  for (auto precision :
       {saddle::Precision::kFp32, saddle::Precision::kBf16, saddle::Precision::kFp16}) {
    for (const auto& [suffix, variant] : variants) {
      if (precision != saddle::Precision::kFp32 && variant != WganVariant::kDefault) continue;
      benchmark::RegisterBenchmark(
          (std::string("CudaWganGp/") + saddle::precision_name(precision) + suffix).c_str(),
          BM_CudaWganGp, precision, variant)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(2.0);
    }
  }
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
