#include "saddle/solvers/extragradient.h"

#include "saddle/error.h"

namespace saddle {

ExtraGradientSolver::ExtraGradientSolver(torch::Tensor params, const std::vector<Player>& players,
                                         const SolverOptions& options, Variant variant,
                                         std::string name)
    : Solver(std::move(params), players, options), variant_(variant), name_(std::move(name)) {
  // Anchored dual averaging multiplies the whole sum of operators by the step, so the step must
  // never grow (UnderGrad, QODA): auto, which grows, makes it diverge (measured on the bilinear
  // game even without noise, at iteration 300).
  SADDLE_CHECK(variant_ != Variant::kDualAveraging || step_size_->kind() != StepSizeKind::kAuto,
               "--step-size auto cannot drive --variant dual-averaging: its anchored update "
               "needs a step that never grows (use qgenx, its default, adagrad or constant)");
  if (variant_ == Variant::kOptimistic && step_size_->kind() == StepSizeKind::kAuto) {
    step_size_ =
        make_step_size(StepSizeKind::kAuto, AutoStepSize::kOptimisticSafety, options.step_max());
  }
  preconditioned_ = options.precondition() == Precondition::kAdam;
  SADDLE_CHECK(!preconditioned_ || variant_ != Variant::kDualAveraging,
               "--precondition adam cannot drive --variant dual-averaging: its anchored sum would "
               "be rescaled by a metric that changes every step");
  if (preconditioned_) {
    base_lr_ = lr_.clone();
    adam_ = AdamMoments(z_, options.beta1(), options.beta2(), options.eps());
  }
  anchor_ = torch::empty_like(z_);
  previous_half_ = torch::zeros_like(z_);
  previous_point_ = torch::zeros_like(z_);
  if (variant_ == Variant::kDualAveraging) {
    origin_ = z_.detach().clone();
    sum_ = torch::zeros_like(z_);
  }
}

void ExtraGradientSolver::step(const Oracle& oracle) {
  anchor_.copy_(z_);
  // Vhat_t and the point it was evaluated at (the Lipschitz estimate's other end).
  torch::Tensor v_hat, p_hat;
  switch (variant_) {
    case Variant::kExtraGradient:
      v_hat = oracle();
      p_hat = anchor_;
      if (preconditioned_) observe_moment(v_hat);
      break;
    case Variant::kOptimistic:
      if (!have_previous_) {
        // Popov's method needs V_{-1/2}: the first step extrapolates with a real F(X_0) (an
        // extra call) rather than with 0, which would make it a plain gradient step and charge
        // ||F(X_0)||^2 to the step rule at once.
        previous_half_.copy_(oracle());
        previous_point_.copy_(anchor_);
        have_previous_ = true;
        if (preconditioned_) observe_moment(previous_half_);
      }
      v_hat = previous_half_;
      p_hat = previous_point_;
      break;
    case Variant::kDualAveraging:
      // No extrapolation; the estimate compares consecutive evaluations.
      if (have_previous_) {
        v_hat = torch::Tensor();
        p_hat = previous_point_;
      }
      break;
  }
  if (preconditioned_) apply_metric();
  torch::Tensor v_half, half_point;
  StepObservation o;
  double shorten = 1.0;  // < 1 after an extrapolation whose operator was not finite
  int non_finite = 0;
  // The operator of the exchange's previous call (the ranks' noise is measured against it).
  torch::Tensor previous_call = variant_ == Variant::kDualAveraging ? torch::Tensor() : v_hat;
  for (;;) {
    const double scale = step_size_->scale() * shorten;
    // X_{t+1/2}
    if (variant_ != Variant::kDualAveraging)
      move(anchor_, preconditioned_ ? direction_ : v_hat, scale);
    half_point = z_.clone();
    try {
      v_half = oracle();  // V_{t+1/2}
    } catch (const NonFiniteOracle&) {
      // Dual averaging does not extrapolate: its point is the iterate itself.
      if (variant_ == Variant::kDualAveraging || ++non_finite > kNonFiniteRetries) throw;
      ++non_finite_retries_;
      shorten *= kNonFiniteShrink;
      continue;
    }
    const bool against_previous = variant_ != Variant::kDualAveraging;
    o = measure(v_half, v_hat, against_previous);
    if (variant_ == Variant::kDualAveraging) {
      measure_lipschitz(o, v_half, have_previous_ ? previous_half_ : torch::Tensor(), half_point,
                        p_hat);
    } else {
      measure_lipschitz(o, v_half, v_hat, half_point, p_hat);
      if (variant_ == Variant::kExtraGradient && have_previous_) {
        measure_lipschitz_previous(o, v_half, previous_half_, half_point, previous_point_);
      }
      measure_noise(o, v_half, previous_call, previous_call.is_same(v_hat));
      previous_call = v_half;
    }
    // A clearly unstable extrapolation (auto) is redone with the step it measured.
    if (variant_ == Variant::kDualAveraging || !step_size_->retry_half_step(o)) break;
  }
  step_size_->observe(o);
  const double update = step_size_->update_scale() * shorten;
  if (preconditioned_) {
    // The update's metric has seen the operator it moves by (as Adam's step sees its gradient).
    observe_moment(v_half);
    apply_metric();
  }
  record_half_step(half_point, update);
  if (variant_ == Variant::kDualAveraging) {
    // X_{t+1} = X_0 - gamma_{t+1} sum_{s<=t} V_{s+1/2}, with the rule's next scale.
    sum_.add_(v_half);
    move(origin_, sum_, step_size_->scale());
  } else {
    move(anchor_, preconditioned_ ? direction_ : v_half, update);  // X_{t+1}
  }
  previous_half_.copy_(v_half);
  previous_point_.copy_(half_point);
  have_previous_ = true;
  ++iteration_;
}

void ExtraGradientSolver::observe_moment(const torch::Tensor& v) {
  torch::NoGradGuard no_grad;
  adam_.observe(v);
  // The direction a move goes by: the bias-corrected first moment (v itself when beta1 = 0).
  direction_ = adam_.first();
}

void ExtraGradientSolver::scale_learning_rates(double factor) {
  Solver::scale_learning_rates(factor);
  if (preconditioned_) base_lr_.mul_(factor);  // apply_metric() derives lr from it
}

void ExtraGradientSolver::apply_metric() {
  torch::NoGradGuard no_grad;
  // lr = base_lr / (sqrt(vhat) + eps), elementwise: the same bits whatever the threads.
  torch::div_out(lr_, base_lr_, adam_.denominator());
  torch::reciprocal_out(inv_lr_, lr_);
}

std::vector<std::pair<std::string, torch::Tensor>> ExtraGradientSolver::state() const {
  auto out = Solver::state();
  out.emplace_back("previous_half", previous_half_);
  out.emplace_back("previous_point", previous_point_);
  out.emplace_back("have_previous", torch::tensor({have_previous_ ? 1 : 0}, torch::kInt64));
  if (variant_ == Variant::kDualAveraging) {
    out.emplace_back("origin", origin_);
    out.emplace_back("sum", sum_);
  }
  if (preconditioned_) adam_.append_state(out);
  return out;
}

void ExtraGradientSolver::load_state(
    const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  Solver::load_state(state);
  for (const auto& [name, tensor] : state) {
    if (name == "previous_half") previous_half_.copy_(tensor);
    if (name == "previous_point") previous_point_.copy_(tensor);
    if (name == "have_previous") have_previous_ = tensor.item<int64_t>() != 0;
    if (name == "origin" && origin_.defined()) origin_.copy_(tensor);
    if (name == "sum" && sum_.defined()) sum_.copy_(tensor);
  }
  if (preconditioned_) {
    adam_.load_state(state);
    if (adam_.count() > 0) direction_ = adam_.first();
  }
}

}  // namespace saddle
