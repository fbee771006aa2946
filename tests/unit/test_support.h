// Helpers shared by the unit tests: run a solver on a game without the runner, and small games.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "saddle/averaging.h"
#include "saddle/game.h"
#include "saddle/games/registry.h"
#include "saddle/solver.h"

namespace saddle::testing {

// Runs `iterations` steps of `solver` on `game` with the game's own oracle (one process, no
// exchange) and returns distance_sq after every step (index 0: before the first step).
inline std::vector<double> trajectory(Game& game, Solver& solver, int64_t iterations,
                                      uint64_t seed = 0) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Oracle oracle = [&]() { return game.operator_at(gen); };
  std::vector<double> out;
  out.push_back(*find_metric(game.metrics(), "distance_sq"));
  for (int64_t t = 0; t < iterations; ++t) {
    solver.step(oracle);
    out.push_back(*find_metric(game.metrics(), "distance_sq"));
  }
  return out;
}

// qgenx with step rule `step` from gamma_0 = 1 on a 2-D bilinear game (condition 1) with absolute
// noise of scale 1: distance_sq of the uniformly averaged iterate at each of `checkpoints`,
// averaged over `seeds` seeds. `half_steps`: the average of X_{t+1/2} (what the theory bounds),
// otherwise of X_{t+1}.
inline std::vector<double> averaged_error_under_absolute_noise(
    StepSizeKind step, bool half_steps, const std::vector<int64_t>& checkpoints, int seeds) {
  std::vector<double> out(checkpoints.size(), 0.0);
  for (int seed = 0; seed < seeds; ++seed) {
    GameOptions options;
    options.dim = 2;
    options.condition = 1.0;
    options.noise = "absolute";
    options.noise_scale = 1.0;
    auto game = make_game("bilinear", options);
    auto solver = make_solver("qgenx", game->params(), game->players(),
                              SolverOptions().lr(1.0).step_size(step));
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + seed);
    Oracle oracle = [&]() { return game->operator_at(gen); };
    IterateAverage average(AveragingKind::kUniform, 0.0);
    const torch::Tensor z_star = *game->equilibrium();
    size_t next = 0;
    for (int64_t t = 1; next < checkpoints.size(); ++t) {
      solver->step(oracle);
      average.update(half_steps ? solver->half_step() : game->params());
      if (t == checkpoints[next]) {
        out[next] +=
            (average.value() - z_star).to(torch::kFloat64).square().sum().item<double>() / seeds;
        ++next;
      }
    }
  }
  return out;
}

// Slope of log(distance) against log(T) between the first and the last checkpoint, from squared
// distances: O(1/sqrt(T)) is about -0.5.
inline double distance_slope(const std::vector<double>& sq_distances,
                             const std::vector<int64_t>& checkpoints) {
  return 0.5 * std::log(sq_distances.back() / sq_distances.front()) /
         std::log(static_cast<double>(checkpoints.back()) / checkpoints.front());
}

// f(x, y) = x * y on R x R, F(x, y) = (y, -x); equilibrium (0, 0); starts at (1, 1).
class ScalarBilinear final : public Game {
 public:
  ScalarBilinear() {
    init_params({Player{"x", Role::kMin, 0, 1}, Player{"y", Role::kMax, 0, 1}},
                torch::tensor({1.0f, 1.0f}));
  }
  std::string name() const override { return "scalar-bilinear"; }
  torch::Tensor operator_at(at::Generator&) override {
    ++calls;
    return torch::stack({params_[1], -params_[0]});
  }
  Metrics metrics() override {
    return {{"distance_sq", params_.to(torch::kFloat64).square().sum().item<double>()}};
  }
  double x() const { return params_[0].item<double>(); }
  double y() const { return params_[1].item<double>(); }
  int calls = 0;
};

// f(x, y) = c x y: ScalarBilinear with its operator scaled by c.
class ScalarBilinearScaled final : public Game {
 public:
  explicit ScalarBilinearScaled(double c) : c_(c) {
    init_params({Player{"x", Role::kMin, 0, 1}, Player{"y", Role::kMax, 0, 1}},
                torch::tensor({1.0f, 1.0f}));
  }
  std::string name() const override { return "scaled-scalar-bilinear"; }
  torch::Tensor operator_at(at::Generator&) override {
    return torch::stack({params_[1], -params_[0]}) * c_;
  }
  Metrics metrics() override {
    return {{"distance_sq", params_.to(torch::kFloat64).square().sum().item<double>()}};
  }

 private:
  double c_;
};

}  // namespace saddle::testing
