#include "saddle/solvers/adam.h"

#include <cmath>

namespace saddle {

AdamMoments::AdamMoments(const torch::Tensor& like, double beta1, double beta2, double eps)
    : beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      m_(torch::zeros_like(like)),
      v_(torch::zeros_like(like)) {}

void AdamMoments::observe(const torch::Tensor& g) {
  torch::NoGradGuard no_grad;
  ++updates_;
  m_.mul_(beta1_).add_(g, 1.0 - beta1_);
  v_.mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
}

torch::Tensor AdamMoments::first() const {
  return m_ / (1.0 - std::pow(beta1_, static_cast<double>(updates_)));
}

torch::Tensor AdamMoments::denominator() const {
  const double correction = 1.0 - std::pow(beta2_, static_cast<double>(updates_));
  return (v_ / correction).sqrt_().add_(eps_);
}

void AdamMoments::append_state(std::vector<std::pair<std::string, torch::Tensor>>& out) const {
  out.emplace_back("m", m_);
  out.emplace_back("v", v_);
  out.emplace_back("updates", torch::tensor({updates_}, torch::kInt64));
}

void AdamMoments::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  for (const auto& [name, tensor] : state) {
    if (name == "m") m_.copy_(tensor);
    if (name == "v") v_.copy_(tensor);
    if (name == "updates") updates_ = tensor.item<int64_t>();
  }
}

AdamSolver::AdamSolver(torch::Tensor params, const std::vector<Player>& players,
                       const SolverOptions& options, AdamExtrapolation extrapolation)
    : Solver(std::move(params), players, options),
      extrapolation_(extrapolation),
      moments_(z_, options.beta1(), options.beta2(), options.eps()) {
  anchor_ = torch::empty_like(z_);
  previous_direction_ = torch::zeros_like(z_);
  previous_operator_ = torch::zeros_like(z_);
}

torch::Tensor AdamSolver::direction(const torch::Tensor& g) {
  moments_.observe(g);
  return moments_.first().div_(moments_.denominator());
}

void AdamSolver::step(const Oracle& oracle) {
  const double scale = step_size_->scale();
  if (optimistic()) {
    const torch::Tensor point = z_.clone();
    torch::Tensor g = oracle();
    torch::Tensor d = direction(g);
    const bool first = moments_.count() == 1;
    // X_{t+1} = X_t - gamma (2 d_t - d_{t-1}); the first step, without d_{-1}, is X_0 - gamma d_0.
    torch::Tensor combined = first ? d : d * 2.0 - previous_direction_;
    if (!first) {
      StepObservation o = measure(g, previous_operator_, /*against_previous=*/true);
      step_size_->observe(o);
    }
    record_half_step(point, scale);
    move(z_, combined, scale);
    previous_direction_.copy_(d);
    previous_operator_.copy_(g);
  } else {
    anchor_.copy_(z_);
    torch::Tensor g_hat = oracle();
    move(anchor_, direction(g_hat), scale);  // extrapolation X_{t+1/2}
    record_half_step(z_, scale);
    torch::Tensor g_half = oracle();
    move(anchor_, direction(g_half), scale);  // update from X_t
    step_size_->observe(measure(g_half, g_hat, /*against_previous=*/true));
  }
  ++iteration_;
}

std::vector<std::pair<std::string, torch::Tensor>> AdamSolver::state() const {
  auto out = Solver::state();
  moments_.append_state(out);
  out.emplace_back("previous_direction", previous_direction_);
  out.emplace_back("previous_operator", previous_operator_);
  return out;
}

void AdamSolver::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  Solver::load_state(state);
  moments_.load_state(state);
  for (const auto& [name, tensor] : state) {
    if (name == "previous_direction") previous_direction_.copy_(tensor);
    if (name == "previous_operator") previous_operator_.copy_(tensor);
  }
}

}  // namespace saddle
