// The Adam family for games (Gidel et al., ICLR 2019; Daskalakis et al., ICLR 2018):
//   ExtraAdam       — extrapolate from X_t with an Adam step on F(X_t), then step from X_t with
//                     an Adam step on F(X_{t+1/2}); both steps update the moment estimates.
//   OptimisticAdam  — X_{t+1} = X_t - gamma (2 d_t - d_{t-1}), d the Adam direction; one call.
//                     The first step has no d_{-1}: it is a plain Adam step (d_{-1} = d_0), not a
//                     double one, and the step rules see no difference for it.
#pragma once

#include "saddle/solver.h"

namespace saddle {

enum class AdamExtrapolation { kExtraGradient, kOptimistic };

// Adam's moment estimates of a sequence of operators (Kingma & Ba): m and v, exponential averages
// (beta1, beta2) of g and g*g, and their bias corrections. AdamSolver's directions and the
// extra-gradient family's --precondition adam both read them. Checkpointed as "m", "v", "updates".
class AdamMoments {
 public:
  AdamMoments() = default;
  AdamMoments(const torch::Tensor& like, double beta1, double beta2, double eps);
  // Folds g into m and v.
  void observe(const torch::Tensor& g);
  int64_t count() const { return updates_; }
  // m / (1 - beta1^n): the bias-corrected first moment.
  torch::Tensor first() const;
  // sqrt(v / (1 - beta2^n)) + eps: the per-coordinate scale a step is divided by.
  torch::Tensor denominator() const;
  void append_state(std::vector<std::pair<std::string, torch::Tensor>>& out) const;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state);

 private:
  double beta1_ = 0.0, beta2_ = 0.0, eps_ = 0.0;
  torch::Tensor m_, v_;
  int64_t updates_ = 0;
};

class AdamSolver final : public Solver {
 public:
  AdamSolver(torch::Tensor params, const std::vector<Player>& players, const SolverOptions& options,
             AdamExtrapolation extrapolation);
  std::string name() const override { return optimistic() ? "optimistic-adam" : "extra-adam"; }
  void step(const Oracle& oracle) override;
  int oracle_calls_per_step() const override { return optimistic() ? 1 : 2; }

  std::vector<std::pair<std::string, torch::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) override;

 private:
  // Folds g into the moments and returns the bias-corrected Adam direction.
  torch::Tensor direction(const torch::Tensor& g);

  bool optimistic() const { return extrapolation_ == AdamExtrapolation::kOptimistic; }

  AdamExtrapolation extrapolation_;
  AdamMoments moments_;
  torch::Tensor anchor_, previous_direction_, previous_operator_;
};

}  // namespace saddle
