#include "saddle/solver.h"

#include <set>

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

Solver::Solver(torch::Tensor params, const std::vector<Player>& players,
               const SolverOptions& options)
    : z_(std::move(params)),
      players_(players),
      options_(options),
      step_size_(make_step_size(options.step_size())) {
  SADDLE_CHECK(z_.defined() && z_.dim() == 1, "solver needs the game's flat 1-D parameter vector");
  // Per-coordinate learning rates are float32 tensors: a rate must be finite there too.
  auto valid_rate = [](double lr) { return lr > 0.0 && lr <= 3.4e38; };
  SADDLE_CHECK(valid_rate(options.lr()), "invalid --lr ", options.lr(),
               " (must be a finite number > 0, below 3.4e38)");
  SADDLE_CHECK(options.beta1() >= 0.0 && options.beta1() < 1.0, "invalid beta1 ", options.beta1(),
               " (expected 0 <= beta1 < 1)");
  SADDLE_CHECK(options.beta2() >= 0.0 && options.beta2() < 1.0, "invalid beta2 ", options.beta2(),
               " (expected 0 <= beta2 < 1)");
  SADDLE_CHECK(options.eps() > 0.0 && options.eps() < 1e30, "invalid --eps ", options.eps(),
               " (must be a finite number > 0)");
  std::set<std::string> names;
  lr_ = torch::full_like(z_, options.lr());
  for (const auto& player : players_) {
    names.insert(player.name);
    auto it = options.player_lr().find(player.name);
    if (it != options.player_lr().end()) {
      SADDLE_CHECK(valid_rate(it->second), "invalid --player-lr ", player.name, "=", it->second,
                   " (must be a finite number > 0, below 3.4e38)");
      lr_.narrow(0, player.offset, player.numel).fill_(it->second);
    }
  }
  for (const auto& [name, lr] : options.player_lr()) {
    if (names.count(name) == 0) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw Error("--player-lr names unknown player '" + name + "' (players: " + known + ")");
    }
  }
}

void Solver::move(const torch::Tensor& base, const torch::Tensor& direction, double scale) {
  torch::NoGradGuard no_grad;
  // z = base - scale * lr * direction, written into z's storage (modules alias it).
  z_.copy_(base).addcmul_(lr_, direction, -scale);
}

std::vector<std::pair<std::string, torch::Tensor>> Solver::state() const {
  return {{"iteration", torch::tensor({iteration_}, torch::kInt64)},
          {"step_size_sum", torch::tensor({step_size_->state()}, torch::kFloat64)}};
}

void Solver::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  for (const auto& [name, tensor] : state) {
    if (name == "iteration") iteration_ = tensor.item<int64_t>();
    if (name == "step_size_sum") step_size_->set_state(tensor.item<double>());
  }
}

const std::vector<std::string>& solver_names() {
  static const std::vector<std::string> kNames = {"gda",        "alt-gda",         "eg",   "ogda",
                                                  "extra-adam", "optimistic-adam", "qgenx"};
  return kNames;
}

std::unique_ptr<Solver> make_solver(const std::string& name, torch::Tensor params,
                                    const std::vector<Player>& players,
                                    const SolverOptions& options) {
  if (name == "gda") return std::make_unique<GdaSolver>(params, players, options, false);
  if (name == "alt-gda") return std::make_unique<GdaSolver>(params, players, options, true);
  if (name == "eg") {
    return std::make_unique<ExtraGradientSolver>(params, players, options, Variant::kExtraGradient,
                                                 "eg");
  }
  if (name == "ogda") {
    return std::make_unique<ExtraGradientSolver>(params, players, options, Variant::kOptimistic,
                                                 "ogda");
  }
  if (name == "qgenx") {
    return std::make_unique<ExtraGradientSolver>(params, players, options, options.variant(),
                                                 "qgenx");
  }
  if (name == "extra-adam") return std::make_unique<AdamSolver>(params, players, options, false);
  if (name == "optimistic-adam")
    return std::make_unique<AdamSolver>(params, players, options, true);
  std::string known;
  for (const auto& n : solver_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown solver '" + name + "' (expected one of: " + known + ")");
}

}  // namespace saddle
