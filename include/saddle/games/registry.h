// The game table behind `saddle solve --game NAME`: every game shipped with saddle, its factory and
// the defaults each solver trains it with. A user's own game needs no registration (see examples/).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saddle/game.h"
#include "saddle/solver.h"

namespace saddle {

// Options of the shipped games; each game reads the ones it understands.
struct GameOptions {
  // Analytic games: dimension of each player, condition number of the coupling / curvature.
  int64_t dim = 10;
  double condition = 5.0;
  // Stochastic oracle: "none", "absolute" (additive Gaussian), "relative" (multiplicative
  // Gaussian, vanishing at the solution) or "finite-sum" (average of `samples` random games).
  std::string noise = "none";
  double noise_scale = 0.1;
  int64_t samples = 64;  // finite-sum size
  // Samples per operator evaluation on each rank; 0: the game's default (1 for the analytic
  // games, 64 images for wgan-gp, 256 points for mog8/mog25).
  int64_t batch = 0;
  // Seeds the game instance (its matrices, networks and starting point) — identical on every rank.
  uint64_t seed = 0;
  // This process's rank and the number of ranks: data-backed games read a disjoint shard.
  int rank = 0;
  int ranks = 1;
  // Where the game's parameters, operator and data live (saddle/device.h). Random draws come
  // from the CPU generators either way, so the samples do not depend on the device.
  torch::Device device = torch::kCPU;
  // On a CUDA device, games that can (wgan-gp) replay their operator evaluation as a CUDA graph
  // (saddle/device_graph.h). Ignored elsewhere.
  bool cuda_graphs = true;

  // GAN games (wgan-gp, mog8, mog25).
  std::string dataset = "fashion-mnist";  // wgan-gp: fashion-mnist | cifar10
  std::string data_dir;                   // empty: the dataset's default location
  int64_t filters = 64;                   // DCGAN-32 width
  int64_t latent = 128;                   // generator input size
  double gp_lambda = 10.0;                // gradient-penalty weight
  std::string gan_loss = "wgan-gp";       // wgan-gp | nonsaturating
  // Image metrics (wgan-gp on fashion-mnist): the Fashion-MNIST classifier whose features FID
  // and the Inception-style score use (trained and cached at this path when missing; empty: no
  // image metrics), and how many generated images they are computed on.
  std::string classifier;
  int64_t fid_samples = 10000;
};

// What `saddle solve --game G --solver S` uses unless a flag (or --config) says otherwise. A field
// left empty keeps the command's own default.
struct RunDefaults {
  std::optional<int64_t> iterations;
  std::optional<double> lr;
  std::optional<std::vector<std::string>> player_lr;  // NAME=LR, as --player-lr takes them
  std::optional<std::string> step_size;               // auto | qgenx | adagrad | constant
  std::optional<double> step_max;                     // auto's ceiling on gamma_t / gamma_0
  std::optional<std::string> precondition;            // none | adam (eg, ogda, qgenx)
  std::optional<double> beta1;
  std::optional<double> beta2;
  std::optional<std::string> averaging;  // none | uniform | weighted | ema
  std::optional<double> ema_decay;
  std::optional<int64_t> batch;
  std::optional<int64_t> latent;
  std::optional<int64_t> filters;
  std::optional<std::string> gan_loss;
  std::optional<int64_t> dim;  // analytic games: each player's dimension
  std::optional<int64_t> divergence_retries;  // RunOptions::divergence_retries

  // These defaults with every field that `over` sets replaced by `over`'s.
  RunDefaults with(const RunDefaults& over) const;
  // "lr 0.002, iters 3000, latent 2, ..." keyed by the long flag names.
  std::string describe() const;
};

// One solver on one game: the defaults it trains with, or why the pairing does not train.
struct SolverPairing {
  std::string solver;
  RunDefaults defaults;  // on top of the game's own
  std::string poor;      // empty, or the reason this solver does not solve this game
};

// One row of the game table: name -> factory, with the defaults each solver trains with.
// The metric by which a game's runs are compared (saddle compare's table and plots): its name in
// metrics.jsonl, its direction, and whether it spans decades (plotted on a log axis).
struct Headline {
  std::string metric;
  bool lower_is_better = true;
  bool log_scale = false;
};

struct GameSpec {
  std::string name;
  std::string description;
  // A known equilibrium (distance_sq is reported; every solver is tested on it).
  bool analytic = false;
  std::function<std::unique_ptr<Game>(const GameOptions&)> make;
  RunDefaults defaults;
  std::vector<SolverPairing> solvers;
  Headline headline;

  // The game's defaults with `solver`'s on top.
  RunDefaults defaults_for(const std::string& solver) const;
  // Why `solver` is a poor pairing for this game; empty when it trains.
  std::string poor_pairing(const std::string& solver) const;
  // SolverOptions() with `solver`'s defaults on this game: learning rate, step rule (the
  // solver's own when the table names none) and Adam decays.
  SolverOptions solver_options(const std::string& solver) const;
  // GameOptions() with this game's defaults for `solver` (batch, latent, width, GAN loss, dim).
  GameOptions game_options(const std::string& solver) const;
};

// The table of shipped games, in the order `saddle solve --help` lists them.
const std::vector<GameSpec>& game_specs();
// Throws saddle::Error naming the unknown game.
const GameSpec& game_spec(const std::string& name);

const std::vector<std::string>& game_names();
// The games with a known equilibrium, on which every solver is tested (bilinear, quadratic).
const std::vector<std::string>& analytic_game_names();

// Throws saddle::Error naming the unknown game or the invalid option.
std::unique_ptr<Game> make_game(const std::string& name, const GameOptions& options);

}  // namespace saddle
