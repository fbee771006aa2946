// Wall-clock time of the wgan-gp game at the Q-GenX experiment size: 64 filters, batch 64, latent
// 128, 1-channel 32x32 images (uniform noise stands in for Fashion-MNIST: the cost does not depend
// on the pixels), two intra-op threads, one process, no exchange. Reported in milliseconds of real
// time: one extra-gradient iteration (two operator evaluations and both updates), and one operator
// evaluation alone. Run with --benchmark_repetitions=5 and read the median. The CPU column is the
// whole process's CPU time (both threads): on a loaded machine, CPU / 2 is the better estimate of
// the unloaded wall time.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <memory>

#include "saddle/games/wgan_gp.h"
#include "saddle/solver.h"

namespace {

using saddle::GameOptions;
using saddle::WganGpGame;

std::unique_ptr<WganGpGame> make_bench_game(const std::string& loss) {
  torch::set_num_threads(2);
  GameOptions options;
  options.filters = 64;
  options.batch = 64;
  options.latent = 128;
  options.gan_loss = loss;
  saddle::RealBatches noise = [](int64_t batch, at::Generator& gen) {
    return torch::rand({batch, 1, 32, 32}, gen) * 2 - 1;
  };
  return std::make_unique<WganGpGame>(options, noise, 1);
}

void BM_WganGpExtraGradientIteration(benchmark::State& state, const std::string& loss) {
  auto game = make_bench_game(loss);
  auto solver =
      saddle::make_solver("eg", game->params(), game->players(), saddle::SolverOptions().lr(1e-4));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  saddle::Oracle oracle = [&]() { return game->operator_at(gen); };
  solver->step(oracle);  // warm-up: allocator, oneDNN primitive caches
  for (auto _ : state) solver->step(oracle);
}

void BM_WganGpOperator(benchmark::State& state, const std::string& loss) {
  auto game = make_bench_game(loss);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  benchmark::DoNotOptimize(game->operator_at(gen));
  for (auto _ : state) benchmark::DoNotOptimize(game->operator_at(gen));
}

BENCHMARK_CAPTURE(BM_WganGpExtraGradientIteration, wgan_gp, std::string("wgan-gp"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_WganGpOperator, wgan_gp, std::string("wgan-gp"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->MinTime(1.0);
BENCHMARK_CAPTURE(BM_WganGpOperator, nonsaturating, std::string("nonsaturating"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->MinTime(1.0);

}  // namespace
