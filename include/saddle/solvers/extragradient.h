// The generalized extra-gradient template of Q-GenX (Ramezani-Kebrya et al., ICLR 2023):
//     X_{t+1/2} = X_t - gamma_t Vhat_t,      V_{t+1/2} = oracle at X_{t+1/2},
//     X_{t+1}   = X_t - gamma_t V_{t+1/2},
// with Vhat_t = F(X_t) (extra-gradient), V_{t-1/2} (optimistic / past extra-gradient, Popov) or
// 0 (dual averaging). "eg", "ogda" and "qgenx" are this one class, configured.
#pragma once

#include "saddle/solver.h"

namespace saddle {

class ExtraGradientSolver final : public Solver {
 public:
  ExtraGradientSolver(torch::Tensor params, const std::vector<Player>& players,
                      const SolverOptions& options, Variant variant, std::string name);
  std::string name() const override { return name_; }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override { return variant_ == Variant::kExtraGradient ? 2 : 1; }
  Variant variant() const { return variant_; }

  std::vector<std::pair<std::string, torch::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) override;

 private:
  Variant variant_;
  std::string name_;
  torch::Tensor anchor_;         // X_t while the oracle is called at X_{t+1/2}
  torch::Tensor previous_half_;  // V_{t-1/2} (optimistic)
};

}  // namespace saddle
