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

#include "saddle/error.h"
#include "saddle/game.h"
#include "saddle/step_size.h"

namespace saddle {

// F at the current parameters, averaged over ranks. Must not modify z. Solvers call it with
// autograd enabled, so games may differentiate their losses inside it. Each call returns a tensor
// the solver owns: a later call never overwrites it (extra-gradient keeps both).
using Oracle = std::function<torch::Tensor()>;

// Thrown by an Oracle when the operator at the current z is not finite on some rank: on every
// rank alike (the exchange agrees on it), with the game's state as it was before the evaluation.
// The extra-gradient family retries an extrapolation that met it with a shorter step; anywhere
// else it ends the run (the runner reports it as a divergence at its iteration).
class NonFiniteOracle : public Error {
 public:
  explicit NonFiniteOracle(int rank)
      : Error("the operator on rank " + std::to_string(rank) + " is not finite (or beyond 1e30)"),
        rank_(rank) {}
  int rank() const { return rank_; }

 private:
  int rank_;
};

// The choice of the extrapolation operator Vhat_t of the generalized extra-gradient template.
enum class Variant {
  kExtraGradient,  // Vhat_t = F(X_t): two oracle calls per step
  kOptimistic,     // Vhat_t = V_{t-1/2}, the previous half-step operator (Popov): one call
                   // (two in the first step, which extrapolates with a real F(X_0))
  kDualAveraging,  // Vhat_t = 0 and the anchored update X_{t+1} = X_0 - gamma_{t+1} sum V: one call
};

Variant parse_variant(const std::string& name);  // "eg" | "optimistic" | "dual-averaging"
const char* variant_name(Variant variant);

// A per-coordinate metric for the extra-gradient family (eg, ogda, qgenx).
enum class Precondition {
  kNone,  // every coordinate moves by its player's rate
  kAdam,  // Adam's: moves go by the bias-corrected first moment of the exchanged operators, each
          // coordinate's rate divided by the root of their second moment plus eps
};
Precondition parse_precondition(const std::string& name);  // "none" | "adam"

// Per-player learning rates by player name.
using PlayerRates = std::map<std::string, double>;

struct SolverOptions {
  // Base learning rate gamma_0 of every player.
  TORCH_ARG(double, lr) = 0.1;
  // Per-player learning rates by player name; they replace lr for that player.
  TORCH_ARG(PlayerRates, player_lr) = {};
  // The step rule (step_size.h). The CLI's default: auto for the extra-gradient family (eg, ogda,
  // qgenx), constant for the others.
  TORCH_ARG(StepSizeKind, step_size) = StepSizeKind::kConstant;
  // auto only: the largest step gamma_t / gamma_0 it may take (0: no limit).
  TORCH_ARG(double, step_max) = 0.0;
  // qgenx only.
  TORCH_ARG(Variant, variant) = Variant::kExtraGradient;
  // eg, ogda, qgenx (not with dual averaging): Adam's metric and momentum; uses the betas and eps.
  TORCH_ARG(Precondition, precondition) = Precondition::kNone;
  // Adam family (ExtraAdam, OptimisticAdam); beta2 and eps also drive precondition adam.
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
  // Whether step() catches NonFiniteOracle and retries (the runner then keeps the game's state
  // from before each evaluation, to undo one that went non-finite).
  virtual bool retries_non_finite() const { return false; }

  int64_t iteration() const { return iteration_; }
  const StepSize& step_size() const { return *step_size_; }
  const SolverOptions& options() const { return options_; }

  // The point whose operator moved the iterate in the last step, X_{t+1/2} (the iterate itself for
  // methods without extrapolation), and the scale that step used: the ergodic average of the
  // extra-gradient family's guarantees averages these points (IterateAverage, averaging.h).
  const torch::Tensor& half_step() const { return half_; }
  double half_step_weight() const { return half_weight_; }
  // Extrapolations redone with a shorter step because their operator was not finite.
  int64_t non_finite_retries() const { return non_finite_retries_; }

  // Where the step rules read the ranks' own operators: the sum over the K ranks of
  // ||V^k_now - V^k_before||^2 between the last two exchanged operators (against_previous), or of
  // ||V^k_now||^2. Set by the runner from the exchange (qgenx reads the sums, auto with K >= 2
  // estimates the ranks' noise from them); unset, qgenx uses K times the averaged operators'
  // difference and auto sees no noise estimate.
  using RankDifferences = std::function<double(bool against_previous)>;
  void set_rank_differences(int ranks, RankDifferences source);

  // Multiplies every player's learning rate by `factor` (> 0) from now on: the runner halves them
  // when it takes a diverged run back to its last snapshot (RunOptions::divergence_retries). The
  // product of the factors is part of state(), so a resumed run keeps it.
  virtual void scale_learning_rates(double factor);
  double learning_rate_scale() const { return lr_scale_; }

  // Everything a checkpoint needs to continue exactly: named tensors and the step-size state.
  using State = std::vector<std::pair<std::string, torch::Tensor>>;
  virtual State state() const;
  virtual void load_state(const State& state);

 protected:
  // z <- base - scale * lr ⊙ direction (per-player learning rates), in place.
  void move(const torch::Tensor& base, const torch::Tensor& direction, double scale);
  // What the step rules see of one step, summed in the fixed order of detail/reduce.h:
  // ||v_now - v_hat||^2 (v_hat undefined: ||v_now||^2) and the ranks' own version of it
  // (`against_previous`: v_hat was the exchange's previous operator) ...
  StepObservation measure(const torch::Tensor& v_now, const torch::Tensor& v_hat,
                          bool against_previous) const;
  // ... and, in the lr metric, how much the operator changed (v_now at p_now against v_before at
  // p_before) for the local Lipschitz estimate of the auto rule.
  void measure_lipschitz(StepObservation& o, const torch::Tensor& v_now,
                         const torch::Tensor& v_before, const torch::Tensor& p_now,
                         const torch::Tensor& p_before) const;
  // ... and how much of such a change is the ranks' independent noise, from the ranks' own
  // operators at v_now's call and the exchange's previous call, v_previous_call
  // (StepObservation::sq_scaled_noise; auto with K >= 2 only). `measured_pair`: measure() and
  // measure_lipschitz() compared v_now with v_previous_call, so their sums are reused.
  void measure_noise(StepObservation& o, const torch::Tensor& v_now,
                     const torch::Tensor& v_previous_call, bool measured_pair) const;
  // ... and between this step's half point and the previous step's.
  void measure_lipschitz_previous(StepObservation& o, const torch::Tensor& v_now,
                                  const torch::Tensor& v_before, const torch::Tensor& p_now,
                                  const torch::Tensor& p_before) const;
  // Records the point and scale of the step that moved the iterate (half_step()).
  void record_half_step(const torch::Tensor& point, double weight);

  int64_t non_finite_retries_ = 0;
  torch::Tensor z_;
  torch::Tensor lr_;      // per-coordinate base learning rate (each player's lr on its slice)
  torch::Tensor inv_lr_;  // 1 / lr_
  std::vector<Player> players_;
  SolverOptions options_;
  std::unique_ptr<StepSize> step_size_;
  int64_t iteration_ = 0;

 private:
  torch::Tensor half_;
  double half_weight_ = 0.0;
  double lr_scale_ = 1.0;  // the product of scale_learning_rates' factors
  RankDifferences rank_differences_;
  int ranks_ = 1;  // K, as the exchange that feeds rank_differences_ has it
};

// One row per solver: a solver is added here and nowhere else (and to the tests' solver list).
struct SolverSpec {
  const char* name;
  const char* description;
  // Whether it measures the local Lipschitz estimate that the auto step rule needs.
  bool auto_step;
  // The step rule `saddle solve` uses unless --step-size or the game table names one.
  StepSizeKind default_step;
  std::function<std::unique_ptr<Solver>(torch::Tensor, const std::vector<Player>&,
                                        const SolverOptions&)>
      make;
};
const std::vector<SolverSpec>& solver_specs();

// The table's names: "gda", "alt-gda", "eg", "ogda", "extra-adam", "optimistic-adam", "qgenx".
const std::vector<std::string>& solver_names();
// Per-player rates from "NAME=LR" items (--player-lr); throws saddle::Error naming a malformed one.
PlayerRates parse_player_rates(const std::vector<std::string>& items);

// The table's row for `name`; throws saddle::Error naming the unknown solver.
const SolverSpec& solver_spec(const std::string& name);

// Builds a solver by name; throws saddle::Error naming the unknown solver or bad option.
std::unique_ptr<Solver> make_solver(const std::string& name, torch::Tensor params,
                                    const std::vector<Player>& players,
                                    const SolverOptions& options);

}  // namespace saddle
