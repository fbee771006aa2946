// The generalized extra-gradient template of Q-GenX (Ramezani-Kebrya et al., ICLR 2023), after
// the template of Antonakopoulos et al. (NeurIPS 2021):
//     X_{t+1/2} = X_t - gamma_t Vhat_t,      V_{t+1/2} = oracle at X_{t+1/2},
//     X_{t+1}   = X_t - gamma_t V_{t+1/2}                       (extra-gradient, optimistic)
//     X_{t+1}   = X_0 - gamma_{t+1} sum_{s<=t} V_{s+1/2}        (dual averaging: anchored),
// with Vhat_t = F(X_t) (extra-gradient, Korpelevich), V_{t-1/2} (optimistic / past extra-gradient,
// Popov; its first step extrapolates with a real F(X_0)) or 0 (dual averaging, as analysed for
// UnderGrad and QODA). "eg", "ogda" and "qgenx" are this one class, configured. The step rule may
// take a smaller update than extrapolation (auto) and may redo an unstable extrapolation. An
// extrapolation whose operator is not finite (NonFiniteOracle: a GAN step that overshot) is
// redone from X_t with a quarter of the step, up to kNonFiniteRetries times, and the update of
// that iteration takes the same shortening; every rank sees the same failure, so every rank
// retries alike.
//
// With precondition adam the template runs Adam's steps (Extra-Adam's, Gidel et al. 2019, when the
// rule is constant; Q-GenX's GAN experiments pair the template with Adam): a move goes by mhat,
// the bias-corrected exponential average (beta1) of the exchanged operators, and coordinate i by
// gamma_t lr_i / (sqrt(vhat_i) + eps), vhat that of their squares (beta2). As in Adam, both
// averages have seen the operator a move stands for before the move: the extrapolation's include
// Vhat_t, the update's V_{t+1/2}. So no coordinate moves by much more than gamma_t lr_i, also
// where the operator had been zero (a metric from past operators alone moved such coordinates by
// lr / eps and diverged at once on mog8). The step rules (auto, qgenx, adagrad) scale gamma_t as
// without it. The momentum matters on GANs: on mog8 with beta1 = 0 (RMSprop's metric alone)
// neither this nor Extra-Adam captured more than 3 of 8 modes. The exchanged operators are
// bit-identical on every rank, so are the averages.
#pragma once

#include <string>

#include "saddle/solver.h"
#include "saddle/solvers/adam.h"

namespace saddle {

class ExtraGradientSolver final : public Solver {
 public:
  ExtraGradientSolver(torch::Tensor params, const std::vector<Player>& players,
                      const SolverOptions& options, Variant variant, std::string name);
  std::string name() const override { return name_; }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override { return variant_ == Variant::kExtraGradient ? 2 : 1; }
  bool retries_non_finite() const override { return variant_ != Variant::kDualAveraging; }
  Variant variant() const { return variant_; }
  static constexpr int kNonFiniteRetries = 4;
  static constexpr double kNonFiniteShrink = 0.25;
  void scale_learning_rates(double factor) override;
  std::vector<std::pair<std::string, torch::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) override;

 private:
  Variant variant_;
  std::string name_;
  torch::Tensor anchor_;         // X_t while the oracle is called at X_{t+1/2}
  torch::Tensor previous_half_;  // V_{t-1/2} (optimistic) and the point it was evaluated at
  torch::Tensor previous_point_;
  bool have_previous_ = false;
  torch::Tensor origin_;  // X_0 (dual averaging)
  torch::Tensor sum_;     // sum_{s<=t} V_{s+1/2} (dual averaging)

  // precondition adam: Adam's moments of the exchanged operators.
  void observe_moment(const torch::Tensor& v);
  void apply_metric();  // lr_ = base_lr_ / (sqrt(vhat) + eps), and inv_lr_
  bool preconditioned_ = false;
  torch::Tensor base_lr_;
  AdamMoments adam_;
  torch::Tensor direction_;  // the bias-corrected first moment: what a move goes by
};

}  // namespace saddle
