#include "saddle/step_size.h"

#include <algorithm>
#include <cmath>

#include "saddle/error.h"

namespace saddle {

StepSizeKind parse_step_size(const std::string& name) {
  if (name == "constant") return StepSizeKind::kConstant;
  if (name == "qgenx" || name == "adaptive") return StepSizeKind::kQgenx;
  if (name == "adagrad") return StepSizeKind::kAdaGrad;
  if (name == "auto") return StepSizeKind::kAuto;
  throw Error("unknown step size '" + name + "' (expected auto, qgenx, adagrad or constant)");
}

const char* step_size_name(StepSizeKind kind) {
  switch (kind) {
    case StepSizeKind::kConstant: return "constant";
    case StepSizeKind::kQgenx: return "qgenx";
    case StepSizeKind::kAdaGrad: return "adagrad";
    case StepSizeKind::kAuto: return "auto";
  }
  return "constant";
}

namespace {
// A non-finite measurement means the run diverged; the runner reports it with its iteration.
double finite_or_zero(double x) { return std::isfinite(x) ? x : 0.0; }

void check_state(const std::vector<double>& state, size_t size, const char* rule) {
  SADDLE_CHECK(state.size() == size, "checkpoint: the ", rule, " step size has ", state.size(),
               " state values, expected ", size);
}
}  // namespace

double AdaGradStepSize::scale() const { return 1.0 / std::sqrt(1.0 + sum_); }

void AdaGradStepSize::advance(const StepObservation& o) { sum_ += finite_or_zero(o.sq_difference); }

void AdaGradStepSize::set_state(const std::vector<double>& state) {
  check_state(state, 1, "adagrad");
  sum_ = state[0];
}

// Q-GenX, Ramezani-Kebrya et al. (ICLR 2023), the adaptive step of its generalized extra-gradient
// template over K workers:
//   gamma_t = K / sqrt(1 + sum_{s=1}^{t-1} sum_{k=1}^{K} ||V^k_{s+1/2} - Vhat^k_s||^2),
// with V^k the k-th worker's quantized dual vector (its decoded message: every rank decodes every
// rank's message, so every rank holds these) and V = (1/K) sum_k V^k what the template steps with.
// saddle multiplies gamma_t by the learning rate (gamma_0, 1 in the paper).
double QgenxStepSize::scale() const { return static_cast<double>(ranks_) / std::sqrt(1.0 + sum_); }

void QgenxStepSize::advance(const StepObservation& o) {
  ranks_ = std::max(1, o.ranks);
  const double per_rank =
      std::isnan(o.sq_difference_ranks) ? o.sq_difference * ranks_ : o.sq_difference_ranks;
  sum_ += finite_or_zero(per_rank);
}

void QgenxStepSize::set_state(const std::vector<double>& state) {
  check_state(state, 2, "qgenx");
  sum_ = state[0];
  ranks_ = static_cast<int>(state[1]);
}

namespace {
// The squared estimate, noise removed: unbiased, so it may be negative; NaN when unknown.
double signed_sq_lipschitz(double sq_difference, double sq_displacement, double sq_noise) {
  if (!(sq_displacement > 0.0) || !std::isfinite(sq_difference)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double noise = std::isfinite(sq_noise) ? sq_noise : 0.0;  // NaN: not measured
  return (sq_difference - noise) / sq_displacement;
}

double lipschitz_of(double sq_difference, double sq_displacement, double sq_noise) {
  const double sq = signed_sq_lipschitz(sq_difference, sq_displacement, sq_noise);
  return std::isfinite(sq) ? std::sqrt(std::max(0.0, sq)) : 0.0;
}
}  // namespace

bool AutoStepSize::noisy(const StepObservation& o) {
  return std::isfinite(o.sq_scaled_noise) &&
         o.sq_scaled_noise > kNoisyShare * o.sq_scaled_difference;
}

// The local Lipschitz constant of the lr-preconditioned operator between the two points where
// the step's operators were evaluated; a scale s is stable when s * L <= nu. 0: unknown. Both
// estimates leave out the ranks' noise where it is measured: a difference of two independent
// calls carries the same noise whatever the pair.
double AutoStepSize::lipschitz(const StepObservation& o) const {
  return lipschitz_of(o.sq_scaled_difference, o.sq_scaled_displacement, o.sq_scaled_noise);
}

double AutoStepSize::lipschitz_previous(const StepObservation& o) const {
  return lipschitz_of(o.sq_scaled_difference_previous, o.sq_scaled_displacement_previous,
                      o.sq_scaled_noise);
}

double AutoStepSize::floor(const StepObservation& o) const {
  // Where the ranks' noise is measured, the estimates leave it out and need no floor (one that
  // held a step above nu / L there would diverge).
  if (std::isfinite(o.sq_scaled_noise)) return 0.0;
  return peak_ / std::sqrt(1.0 + static_cast<double>(steps_) / kFloorHalfLife);
}

bool AutoStepSize::retry_half_step(const StepObservation& o) {
  const double l = lipschitz(o);
  const double r = l * scale_;  // ||sqrt(lr) dV|| / ||sqrt(lr) Vhat||: about nu when stable
  // A retry that did not bring r down by half says the extrapolation was noise, not too long.
  const bool unresponsive = retries_ > 0 && r > 0.5 * last_ratio_;
  if (!(l > 0.0) || r <= kUnstable * safety_ || unresponsive || retries_ >= 20) {
    retries_ = 0;
    return false;
  }
  const double smaller = std::max(safety_ / l, floor(o));
  if (!(smaller < scale_)) {
    retries_ = 0;
    return false;
  }
  ++retries_;
  last_ratio_ = r;
  scale_ = smaller;
  return true;
}

double AutoStepSize::update_for(const StepObservation& o) {
  if (noisy(o)) {
    // Each estimate is unbiased but noisy: a running maximum would measure the noise. The rule
    // keeps a running mean of the squared estimates instead (the mean curvature of the recent
    // directions), signed so that the mean stays unbiased.
    double sum = 0.0;
    int n = 0;
    for (const double sq :
         {signed_sq_lipschitz(o.sq_scaled_difference, o.sq_scaled_displacement, o.sq_scaled_noise),
          signed_sq_lipschitz(o.sq_scaled_difference_previous, o.sq_scaled_displacement_previous,
                              o.sq_scaled_noise)}) {
      if (std::isfinite(sq)) {
        sum += sq;
        ++n;
      }
    }
    if (n > 0) {
      // The first estimate starts the mean (a mean started at 0 would allow a long first step).
      const double w = lipschitz_ > 0.0 ? kNoisyWeight : 1.0;
      const double mean_sq = (1.0 - w) * lipschitz_ * lipschitz_ + w * sum / n;
      lipschitz_ = std::sqrt(std::max(0.0, mean_sq));
    }
  } else {
    // One extrapolation probes the operator along one direction only, so a single estimate can
    // fall well below the Lipschitz constant: the rule keeps the largest recent estimate, slowly
    // forgotten (the constant of a GAN's operator changes as it trains).
    lipschitz_ = std::max({lipschitz_ * kForget, lipschitz(o), lipschitz_previous(o)});
  }
  const double safe = lipschitz_ > 0.0 ? safety_ / lipschitz_ : scale_;
  return std::min(scale_, std::max(safe, floor(o)));
}

void AutoStepSize::advance(const StepObservation& o) {
  const double l = lipschitz(o);
  // The floor remembers the largest update taken without a sign of instability: the step of the
  // signal regime, or, when noise dominates from the start, the first steps' size.
  if (l * scale_ <= kUnstable * safety_) peak_ = std::max(peak_, update_scale());
  if (o.sq_scaled_operator > 0.0 && std::isfinite(o.sq_scaled_operator)) {
    const double size = std::log(o.sq_scaled_operator);
    const bool first = std::isnan(recent_size_);
    recent_size_ = first ? size : (1.0 - kRecent) * recent_size_ + kRecent * size;
    long_run_size_ = first ? size : (1.0 - kLongRun) * long_run_size_ + kLongRun * size;
    if (recent_size_ - long_run_size_ > std::log(kGrowthAlarm)) {
      peak_ *= 0.5;
      long_run_size_ = recent_size_;
    }
  }
  double next = update_scale() * kGrowth;
  if (lipschitz_ > 0.0) next = std::min(next, safety_ / lipschitz_);
  ++steps_;
  next = std::max(next, floor(o));
  if (max_scale_ > 0.0) next = std::min(next, max_scale_);
  if (std::isfinite(next) && next > 0.0) scale_ = next;
}

std::vector<double> AutoStepSize::state() const {
  return {scale_, peak_, static_cast<double>(steps_), lipschitz_, recent_size_, long_run_size_};
}

void AutoStepSize::set_state(const std::vector<double>& state) {
  check_state(state, 6, "auto");
  scale_ = state[0];
  peak_ = state[1];
  steps_ = static_cast<int64_t>(state[2]);
  lipschitz_ = state[3];
  recent_size_ = state[4];
  long_run_size_ = state[5];
}

std::unique_ptr<StepSize> make_step_size(StepSizeKind kind, double safety, double max_scale) {
  switch (kind) {
    case StepSizeKind::kConstant: return std::make_unique<ConstantStepSize>();
    case StepSizeKind::kQgenx: return std::make_unique<QgenxStepSize>();
    case StepSizeKind::kAdaGrad: return std::make_unique<AdaGradStepSize>();
    case StepSizeKind::kAuto: return std::make_unique<AutoStepSize>(safety, max_scale);
  }
  return std::make_unique<ConstantStepSize>();
}

}  // namespace saddle
