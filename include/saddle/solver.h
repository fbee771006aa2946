// Solver: stage 3 of game -> exchange -> solver -> metrics. A solver moves the game's flat
// parameter vector z in place using an Oracle, a closure that returns F at the current z already
// averaged over all ranks by the Exchange (the closure form of torch::optim's step(closure):
// extra-gradient methods call it twice per step). Solvers never see ranks, samples or bytes.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "saddle/game.h"
#include "saddle/step_size.h"

namespace saddle {

// F at the current parameters, averaged over ranks. Must not modify z. Solvers call it with
// autograd enabled, so games may differentiate their losses inside it. Each call returns a tensor
// the solver owns: a later call never overwrites it (extra-gradient keeps both).
using Oracle = std::function<torch::Tensor()>;

// The choice of the extrapolation operator Vhat_t of the generalized extra-gradient template.
enum class Variant {
  kExtraGradient,  // Vhat_t = F(X_t): two oracle calls per step
  kOptimistic,     // Vhat_t = V_{t-1/2}, the previous half-step operator (Popov): one call
  kDualAveraging,  // Vhat_t = 0: one call
};

Variant parse_variant(const std::string& name);  // "eg" | "optimistic" | "dual-averaging"
const char* variant_name(Variant variant);

// Per-player learning rates by player name.
using PlayerRates = std::map<std::string, double>;

struct SolverOptions {
  // Base learning rate gamma_0 of every player.
  TORCH_ARG(double, lr) = 0.1;
  // Per-player learning rates by player name; they replace lr for that player.
  TORCH_ARG(PlayerRates, player_lr) = {};
  TORCH_ARG(StepSizeKind, step_size) = StepSizeKind::kConstant;
  // qgenx only.
  TORCH_ARG(Variant, variant) = Variant::kExtraGradient;
  // Adam family (ExtraAdam, OptimisticAdam).
  TORCH_ARG(double, beta1) = 0.5;
  TORCH_ARG(double, beta2) = 0.9;
  TORCH_ARG(double, eps) = 1e-8;
};

class Solver {
 public:
  // `params` is the game's z (aliased, updated in place); `players` its layout.
  Solver(torch::Tensor params, const std::vector<Player>& players, const SolverOptions& options);
  virtual ~Solver() = default;
  Solver(const Solver&) = delete;
  Solver& operator=(const Solver&) = delete;

  virtual std::string name() const = 0;
  // One iteration t -> t+1.
  virtual void step(const Oracle& oracle) = 0;
  virtual int oracle_calls_per_step() const = 0;

  int64_t iteration() const { return iteration_; }
  const StepSize& step_size() const { return *step_size_; }
  const SolverOptions& options() const { return options_; }

  // Everything a checkpoint needs to continue exactly: named tensors and the step-size state.
  using State = std::vector<std::pair<std::string, torch::Tensor>>;
  virtual State state() const;
  virtual void load_state(const State& state);

 protected:
  // z <- base - scale * lr ⊙ direction (per-player learning rates), in place.
  void move(const torch::Tensor& base, const torch::Tensor& direction, double scale);

  torch::Tensor z_;
  torch::Tensor lr_;  // per-coordinate base learning rate (each player's lr on its slice)
  std::vector<Player> players_;
  SolverOptions options_;
  std::unique_ptr<StepSize> step_size_;
  int64_t iteration_ = 0;
};

// "gda", "alt-gda", "eg", "ogda", "extra-adam", "optimistic-adam", "qgenx".
const std::vector<std::string>& solver_names();

// Builds a solver by name; throws saddle::Error naming the unknown solver or bad option.
std::unique_ptr<Solver> make_solver(const std::string& name, torch::Tensor params,
                                    const std::vector<Player>& players,
                                    const SolverOptions& options);

}  // namespace saddle
