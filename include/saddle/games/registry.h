// make_game(name, options): the plain factory behind `saddle solve --game NAME`. Every game shipped
// with saddle is registered here; a user's own game needs no registration (see examples/).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "saddle/game.h"

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

const std::vector<std::string>& game_names();
// The games with a known equilibrium, on which every solver is tested (bilinear, quadratic).
const std::vector<std::string>& analytic_game_names();

// Throws saddle::Error naming the unknown game or the invalid option.
std::unique_ptr<Game> make_game(const std::string& name, const GameOptions& options);

}  // namespace saddle
