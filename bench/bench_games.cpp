// The toy games' own cost: one operator evaluation and one gda step of the bilinear game, exact
// against finite-sum (--noise finite-sum: each evaluation draws --batch of --samples stored
// matrices), at several dimensions. Run: ./bench/saddle_bench --benchmark_filter=Bilinear
// The finite sum should cost about what the exact game costs per drawn sample (one matrix-vector
// product each), not a copy of the drawn matrices.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "saddle/games/registry.h"
#include "saddle/solver.h"

namespace {

std::unique_ptr<saddle::Game> bilinear(const std::string& noise, int64_t dim, int64_t batch) {
  saddle::GameOptions options;
  options.dim = dim;
  options.noise = noise;
  options.samples = 64;
  options.batch = batch;
  return saddle::make_game("bilinear", options);
}

void BM_BilinearOperator(benchmark::State& state, const std::string& noise) {
  auto game = bilinear(noise, state.range(0), state.range(1));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  for (auto _ : state) benchmark::DoNotOptimize(game->operator_at(gen).data_ptr());
}

void BM_BilinearGdaStep(benchmark::State& state, const std::string& noise) {
  auto game = bilinear(noise, state.range(0), state.range(1));
  auto solver = saddle::make_solver("gda", game->params(), game->players(),
                                    saddle::SolverOptions().lr(1e-3));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  saddle::Oracle oracle = [&]() { return game->operator_at(gen); };
  for (auto _ : state) solver->step(oracle);
}

bool register_game_benchmarks() {
  for (const char* noise : {"none", "finite-sum"}) {
    for (int64_t batch : {int64_t{1}, int64_t{8}}) {
      if (std::string(noise) == "none" && batch > 1) continue;
      for (int64_t dim : {10, 100, 1000}) {
        benchmark::RegisterBenchmark(("BilinearOperator/" + std::string(noise)).c_str(),
                                     BM_BilinearOperator, std::string(noise))
            ->Args({dim, batch})
            ->ArgNames({"dim", "batch"})
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("BilinearGdaStep/" + std::string(noise)).c_str(),
                                     BM_BilinearGdaStep, std::string(noise))
            ->Args({dim, batch})
            ->ArgNames({"dim", "batch"})
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  return true;
}

const bool registered = register_game_benchmarks();

}  // namespace
