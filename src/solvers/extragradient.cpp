#include "saddle/solvers/extragradient.h"

namespace saddle {

ExtraGradientSolver::ExtraGradientSolver(torch::Tensor params, const std::vector<Player>& players,
                                         const SolverOptions& options, Variant variant,
                                         std::string name)
    : Solver(std::move(params), players, options), variant_(variant), name_(std::move(name)) {
  anchor_ = torch::empty_like(z_);
  previous_half_ = torch::zeros_like(z_);
}

void ExtraGradientSolver::step(const Oracle& oracle) {
  const double scale = step_size_->scale();
  anchor_.copy_(z_);
  torch::Tensor v_hat;
  switch (variant_) {
    case Variant::kExtraGradient: v_hat = oracle(); break;
    case Variant::kOptimistic: v_hat = previous_half_; break;
    case Variant::kDualAveraging: v_hat = torch::Tensor(); break;
  }
  if (v_hat.defined()) move(anchor_, v_hat, scale);  // X_{t+1/2}
  torch::Tensor v_half = oracle();                   // V_{t+1/2}
  move(anchor_, v_half, scale);                      // X_{t+1}
  const double sq = v_hat.defined() ? (v_half - v_hat).square().sum().item<double>()
                                    : v_half.square().sum().item<double>();
  step_size_->observe(sq);
  if (variant_ == Variant::kOptimistic) previous_half_.copy_(v_half);
  ++iteration_;
}

std::vector<std::pair<std::string, torch::Tensor>> ExtraGradientSolver::state() const {
  auto out = Solver::state();
  out.emplace_back("previous_half", previous_half_);
  return out;
}

void ExtraGradientSolver::load_state(
    const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  Solver::load_state(state);
  for (const auto& [name, tensor] : state) {
    if (name == "previous_half") previous_half_.copy_(tensor);
  }
}

}  // namespace saddle
