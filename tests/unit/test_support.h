// Helpers shared by the unit tests: run a solver on a game without the runner, and small games.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

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
