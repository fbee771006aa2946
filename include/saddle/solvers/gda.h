// Gradient descent-ascent: simultaneous (every player steps on F at the same point) and
// alternating (players step one after another, each on F re-evaluated after the previous moved).
#pragma once

#include "saddle/solver.h"

namespace saddle {

enum class GdaUpdate { kSimultaneous, kAlternating };

class GdaSolver final : public Solver {
 public:
  GdaSolver(torch::Tensor params, const std::vector<Player>& players, const SolverOptions& options,
            GdaUpdate update);
  std::string name() const override {
    return update_ == GdaUpdate::kAlternating ? "alt-gda" : "gda";
  }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override;

 private:
  GdaUpdate update_;
  torch::Tensor previous_point_, previous_operator_;  // for the step rules' Lipschitz estimate
};

}  // namespace saddle
