#include "saddle/solver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "detail/reduce.h"
#include "saddle/error.h"
#include "saddle/solvers/adam.h"
#include "saddle/solvers/extragradient.h"
#include "saddle/solvers/gda.h"

namespace saddle {

Variant parse_variant(const std::string& name) {
  if (name == "eg") return Variant::kExtraGradient;
  if (name == "optimistic") return Variant::kOptimistic;
  if (name == "dual-averaging") return Variant::kDualAveraging;
  throw Error("unknown qgenx variant '" + name + "' (expected eg, optimistic or dual-averaging)");
}

const char* variant_name(Variant variant) {
  switch (variant) {
    case Variant::kExtraGradient: return "eg";
    case Variant::kOptimistic: return "optimistic";
    case Variant::kDualAveraging: return "dual-averaging";
  }
  return "eg";
}

Precondition parse_precondition(const std::string& name) {
  if (name == "none") return Precondition::kNone;
  if (name == "adam") return Precondition::kAdam;
  throw Error("unknown --precondition '" + name + "' (expected none or adam)");
}

Solver::Solver(torch::Tensor params, const std::vector<Player>& players,
               const SolverOptions& options)
    : z_(std::move(params)),
      players_(players),
      options_(options),
      step_size_(make_step_size(options.step_size(), AutoStepSize::kExtraGradientSafety,
                                options.step_max())) {
  SADDLE_CHECK(z_.defined() && z_.dim() == 1, "solver needs the game's flat 1-D parameter vector");
  // Per-coordinate learning rates are float32 tensors: a rate must be finite there too.
  auto valid_rate = [](double lr) { return lr > 0.0 && lr <= 3.4e38; };
  SADDLE_CHECK(valid_rate(options.lr()), "invalid --lr ", options.lr(),
               " (must be a finite number > 0, below 3.4e38)");
  SADDLE_CHECK(options.beta1() >= 0.0 && options.beta1() < 1.0, "invalid beta1 ", options.beta1(),
               " (expected 0 <= beta1 < 1)");
  SADDLE_CHECK(options.beta2() >= 0.0 && options.beta2() < 1.0, "invalid beta2 ", options.beta2(),
               " (expected 0 <= beta2 < 1)");
  SADDLE_CHECK(options.step_max() >= 0.0 && std::isfinite(options.step_max()),
               "invalid --step-max ", options.step_max(),
               " (must be a finite number >= 0; 0: no limit)");
  SADDLE_CHECK(options.step_max() == 0.0 || options.step_size() == StepSizeKind::kAuto,
               "--step-max applies to --step-size auto only");
  SADDLE_CHECK(options.eps() > 0.0 && options.eps() < 1e30, "invalid --eps ", options.eps(),
               " (must be a finite number > 0)");
  std::set<std::string> names;
  lr_ = torch::full_like(z_, options.lr());
  half_ = z_.detach().clone();
  for (const auto& player : players_) {
    names.insert(player.name);
    auto it = options.player_lr().find(player.name);
    if (it != options.player_lr().end()) {
      SADDLE_CHECK(valid_rate(it->second), "invalid --player-lr ", player.name, "=", it->second,
                   " (must be a finite number > 0, below 3.4e38)");
      lr_.narrow(0, player.offset, player.numel).fill_(it->second);
    }
  }
  inv_lr_ = lr_.reciprocal();
  for (const auto& [name, lr] : options.player_lr()) {
    if (names.count(name) == 0) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw Error("--player-lr names unknown player '" + name + "' (players: " + known + ")");
    }
  }
}

void Solver::record_half_step(const torch::Tensor& point, double weight) {
  torch::NoGradGuard no_grad;
  half_.copy_(point);
  half_weight_ = weight;
}

StepObservation Solver::measure(const torch::Tensor& v_now, const torch::Tensor& v_hat,
                                bool against_previous) const {
  torch::NoGradGuard no_grad;
  StepObservation o;
  o.sq_difference = detail::fixed_order_sum_squares(v_now, v_hat);
  o.ranks = ranks_;
  // Only the qgenx rule reads the ranks' sums here (a pass over K operators).
  o.sq_difference_ranks = rank_differences_ && step_size_->kind() == StepSizeKind::kQgenx
                              ? rank_differences_(against_previous)
                              : std::numeric_limits<double>::quiet_NaN();
  return o;
}

void Solver::set_rank_differences(int ranks, RankDifferences source) {
  SADDLE_CHECK(ranks >= 1, "Solver::set_rank_differences: ", ranks, " ranks");
  ranks_ = ranks;
  rank_differences_ = std::move(source);
}

void Solver::measure_noise(StepObservation& o, const torch::Tensor& v_now,
                           const torch::Tensor& v_previous_call, bool measured_pair) const {
  if (!rank_differences_ || ranks_ < 2 || step_size_->kind() != StepSizeKind::kAuto) return;
  if (!v_previous_call.defined()) return;
  torch::NoGradGuard no_grad;
  const double k = static_cast<double>(ranks_);
  const double average =
      measured_pair ? o.sq_difference : detail::fixed_order_sum_squares(v_now, v_previous_call);
  const double ranks_sum = rank_differences_(/*against_previous=*/true);
  if (!(average > 0.0) || !std::isfinite(average) || !std::isfinite(ranks_sum)) return;
  // The unbiased estimate of the change of the expected operator between the two calls
  // (StepObservation), as a share of the average's change; the rest is noise, whose size is the
  // same for any two independent calls, so it also stands for the pair the Lipschitz estimate
  // measured (the same pair, unless an extrapolation was redone). It is carried into the lr
  // metric by the pair's own ratio (exact when every coordinate has the same learning rate).
  const double signal = (k * average - ranks_sum / k) / (k - 1.0);
  const double share = std::clamp(signal / average, 0.0, 1.0);
  const double scaled = measured_pair
                            ? o.sq_scaled_difference
                            : detail::fixed_order_sum_squares(v_now, v_previous_call, lr_);
  o.sq_scaled_noise = (1.0 - share) * scaled;
}

namespace {
// The local Lipschitz estimate's two ends in the lr metric: ||sqrt(lr) (v_now - v_before)||^2 and
// ||(p_now - p_before) / sqrt(lr)||^2, each a fixed-order double sum.
void scaled_change(const torch::Tensor& v_now, const torch::Tensor& v_before,
                   const torch::Tensor& p_now, const torch::Tensor& p_before,
                   const torch::Tensor& lr, const torch::Tensor& inv_lr, double& difference,
                   double& displacement) {
  torch::NoGradGuard no_grad;
  difference = detail::fixed_order_sum_squares(v_now, v_before, lr);
  displacement = detail::fixed_order_sum_squares(p_now, p_before, inv_lr);
}
}  // namespace

void Solver::measure_lipschitz(StepObservation& o, const torch::Tensor& v_now,
                               const torch::Tensor& v_before, const torch::Tensor& p_now,
                               const torch::Tensor& p_before) const {
  if (!v_before.defined() || !p_before.defined()) return;
  scaled_change(v_now, v_before, p_now, p_before, lr_, inv_lr_, o.sq_scaled_difference,
                o.sq_scaled_displacement);
  torch::NoGradGuard no_grad;
  o.sq_scaled_operator = detail::fixed_order_sum_squares(v_now, {}, lr_);
}

void Solver::measure_lipschitz_previous(StepObservation& o, const torch::Tensor& v_now,
                                        const torch::Tensor& v_before, const torch::Tensor& p_now,
                                        const torch::Tensor& p_before) const {
  if (!v_before.defined() || !p_before.defined()) return;
  scaled_change(v_now, v_before, p_now, p_before, lr_, inv_lr_, o.sq_scaled_difference_previous,
                o.sq_scaled_displacement_previous);
}

void Solver::move(const torch::Tensor& base, const torch::Tensor& direction, double scale) {
  torch::NoGradGuard no_grad;
  // z = base - scale * lr * direction, written into z's storage (modules alias it).
  z_.copy_(base).addcmul_(lr_, direction, -scale);
}

void Solver::scale_learning_rates(double factor) {
  SADDLE_CHECK(factor > 0.0 && std::isfinite(factor), "invalid learning-rate factor ", factor);
  torch::NoGradGuard no_grad;
  lr_.mul_(factor);
  inv_lr_.div_(factor);
  lr_scale_ *= factor;
}

std::vector<std::pair<std::string, torch::Tensor>> Solver::state() const {
  const std::vector<double> rule = step_size_->state();
  torch::Tensor rule_state = torch::empty({static_cast<int64_t>(rule.size())}, torch::kFloat64);
  for (size_t i = 0; i < rule.size(); ++i) rule_state[static_cast<int64_t>(i)] = rule[i];
  return {{"iteration", torch::tensor({iteration_}, torch::kInt64)},
          {"step_size_state", rule_state},
          {"half_step", half_},
          {"half_step_weight", torch::tensor({half_weight_}, torch::kFloat64)},
          {"non_finite_retries", torch::tensor({non_finite_retries_}, torch::kInt64)},
          {"lr_scale", torch::tensor({lr_scale_}, torch::kFloat64)}};
}

void Solver::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  for (const auto& [name, tensor] : state) {
    if (name == "iteration") iteration_ = tensor.item<int64_t>();
    if (name == "step_size_state") {
      const torch::Tensor t = tensor.to(torch::kCPU, torch::kFloat64).contiguous();
      step_size_->set_state(
          std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel()));
    }
    if (name == "half_step") half_.copy_(tensor);
    if (name == "half_step_weight") half_weight_ = tensor.item<double>();
    if (name == "non_finite_retries") non_finite_retries_ = tensor.item<int64_t>();
    // Checkpoints from before the factor existed hold none: 1.
    if (name == "lr_scale") scale_learning_rates(tensor.item<double>() / lr_scale_);
  }
}

const std::vector<SolverSpec>& solver_specs() {
  using Make = std::function<std::unique_ptr<Solver>(torch::Tensor, const std::vector<Player>&,
                                                     const SolverOptions&)>;
  auto gda = [](GdaUpdate update) -> Make {
    return [update](torch::Tensor z, const std::vector<Player>& p, const SolverOptions& o) {
      return std::make_unique<GdaSolver>(std::move(z), p, o, update);
    };
  };
  auto eg = [](const char* name, std::optional<Variant> variant) -> Make {
    return [name, variant](torch::Tensor z, const std::vector<Player>& p, const SolverOptions& o) {
      return std::make_unique<ExtraGradientSolver>(std::move(z), p, o,
                                                   variant.value_or(o.variant()), name);
    };
  };
  auto adam = [](AdamExtrapolation extrapolation) -> Make {
    return [extrapolation](torch::Tensor z, const std::vector<Player>& p, const SolverOptions& o) {
      return std::make_unique<AdamSolver>(std::move(z), p, o, extrapolation);
    };
  };
  static const std::vector<SolverSpec> kTable = {
      {"gda", "simultaneous gradient descent-ascent", true, StepSizeKind::kConstant,
       gda(GdaUpdate::kSimultaneous)},
      {"alt-gda", "alternating gradient descent-ascent", false, StepSizeKind::kConstant,
       gda(GdaUpdate::kAlternating)},
      {"eg", "extra-gradient (Korpelevich)", true, StepSizeKind::kAuto,
       eg("eg", Variant::kExtraGradient)},
      {"ogda", "optimistic gradient / past extra-gradient (Popov)", true, StepSizeKind::kAuto,
       eg("ogda", Variant::kOptimistic)},
      {"extra-adam", "extra-gradient with Adam steps (Gidel et al.)", false,
       StepSizeKind::kConstant, adam(AdamExtrapolation::kExtraGradient)},
      {"optimistic-adam", "optimistic Adam (Daskalakis et al.)", false, StepSizeKind::kConstant,
       adam(AdamExtrapolation::kOptimistic)},
      {"qgenx", "Q-GenX's generalized extra-gradient (--variant eg | optimistic | dual-averaging)",
       true, StepSizeKind::kAuto, eg("qgenx", std::nullopt)},
  };
  return kTable;
}

const std::vector<std::string>& solver_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& spec : solver_specs()) names.push_back(spec.name);
    return names;
  }();
  return kNames;
}

PlayerRates parse_player_rates(const std::vector<std::string>& items) {
  PlayerRates rates;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    SADDLE_CHECK(eq != std::string::npos && eq > 0, "invalid --player-lr '", item,
                 "' (expected NAME=LR, e.g. critic=5e-4)");
    const std::string value = item.substr(eq + 1);
    size_t used = 0;
    double lr = 0.0;
    try {
      lr = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SADDLE_CHECK(!value.empty() && used == value.size(), "invalid --player-lr '", item, "': '",
                 value, "' is not a number");
    rates[item.substr(0, eq)] = lr;
  }
  return rates;
}

const SolverSpec& solver_spec(const std::string& name) {
  for (const auto& spec : solver_specs()) {
    if (name == spec.name) return spec;
  }
  std::string known;
  for (const auto& n : solver_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown solver '" + name + "' (expected one of: " + known + ")");
}

std::unique_ptr<Solver> make_solver(const std::string& name, torch::Tensor params,
                                    const std::vector<Player>& players,
                                    const SolverOptions& options) {
  const SolverSpec& spec = solver_spec(name);
  SADDLE_CHECK(spec.auto_step || options.step_size() != StepSizeKind::kAuto,
               "--step-size auto needs a solver that measures the operator's local Lipschitz "
               "constant (gda, eg, ogda, qgenx); --solver ",
               name, " takes constant, adagrad or qgenx");
  const bool extra_gradient = name == "eg" || name == "ogda" || name == "qgenx";
  SADDLE_CHECK(options.precondition() == Precondition::kNone || extra_gradient,
               "--precondition applies to the extra-gradient family (eg, ogda, qgenx), not to "
               "--solver ",
               name, name.find("adam") != std::string::npos ? " (it has Adam's own)" : "");
  return spec.make(std::move(params), players, options);
}

}  // namespace saddle
