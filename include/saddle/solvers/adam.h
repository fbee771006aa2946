// The Adam family for games (Gidel et al., ICLR 2019; Daskalakis et al., ICLR 2018):
//   ExtraAdam       — extrapolate from X_t with an Adam step on F(X_t), then step from X_t with
//                     an Adam step on F(X_{t+1/2}); both steps update the moment estimates.
//   OptimisticAdam  — X_{t+1} = X_t - gamma (2 d_t - d_{t-1}), d the Adam direction; one call.
#pragma once

#include "saddle/solver.h"

namespace saddle {

class AdamSolver final : public Solver {
 public:
  AdamSolver(torch::Tensor params, const std::vector<Player>& players, const SolverOptions& options,
             bool optimistic);
  std::string name() const override { return optimistic_ ? "optimistic-adam" : "extra-adam"; }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override { return optimistic_ ? 1 : 2; }

  std::vector<std::pair<std::string, torch::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) override;

 private:
  // Folds g into the moments and returns the bias-corrected Adam direction.
  torch::Tensor direction(const torch::Tensor& g);

  bool optimistic_;
  torch::Tensor m_, v_, anchor_, previous_direction_, previous_operator_;
  int64_t updates_ = 0;
};

}  // namespace saddle
