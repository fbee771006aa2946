// Gradient descent-ascent: simultaneous (every player steps on F at the same point) and
// alternating (players step one after another, each on F re-evaluated after the previous moved).
#pragma once

#include "saddle/solver.h"

namespace saddle {

class GdaSolver final : public Solver {
 public:
  GdaSolver(torch::Tensor params, const std::vector<Player>& players, const SolverOptions& options,
            bool alternating);
  std::string name() const override { return alternating_ ? "alt-gda" : "gda"; }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override;

 private:
  bool alternating_;
};

}  // namespace saddle
