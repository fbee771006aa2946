// AffineGame: games whose operator is affine, F(z) = M z + q, with a known equilibrium
// z* = -M^{-1} q. Bilinear and quadratic games are affine; this class holds what they share: the
// exact operator and metrics, and the stochastic oracles (additive noise, multiplicative noise,
// finite sums of random games with the same mean).
#pragma once

#include "saddle/game.h"
#include "saddle/games/registry.h"

namespace saddle {

enum class NoiseKind { kNone, kAbsolute, kRelative, kFiniteSum };
NoiseKind parse_noise(const std::string& name);

class AffineGame : public Game {
 public:
  torch::Tensor operator_at(at::Generator& gen) override;
  Metrics metrics() override;
  std::optional<torch::Tensor> equilibrium() const override { return z_star_; }

  // The exact operator at z.
  torch::Tensor exact_operator(const torch::Tensor& z) const;
  const torch::Tensor& matrix() const { return m_; }
  const torch::Tensor& offset() const { return q_; }

 protected:
  AffineGame(const GameOptions& options);
  // Called by subclasses once they have built M, z* and the starting point (q = -M z*). For
  // finite sums, `sample_dm` [n, d, d] and `sample_dq` [n, d] are mean-zero perturbations: sample
  // i is the game (M + dM_i, q + dq_i), so their average is the game itself.
  void finish(std::vector<Player> players, torch::Tensor m, torch::Tensor z_star, torch::Tensor z0,
              torch::Tensor sample_dm = {}, torch::Tensor sample_dq = {});

  GameOptions options_;
  NoiseKind noise_;
  torch::Tensor m_, q_, z_star_;
  torch::Tensor sample_m_, sample_q_;
};

// `options` with its analytic-game fields checked (dim, condition, noise, noise scale, batch;
// saddle::Error naming the flag) and batch 0 resolved to 1.
GameOptions checked_analytic_options(GameOptions options);

// The analytic games' oracle noise on the exact operator f (in place): absolute, f + scale xi;
// relative, f (1 + scale xi), unbiased and vanishing at the equilibrium; xi ~ N(0, I) drawn from
// `gen` on the CPU. `scale` is the noise scale over sqrt(batch). Other kinds return f.
torch::Tensor add_oracle_noise(torch::Tensor f, NoiseKind kind, double scale, at::Generator& gen);
// The analytic games' metrics: ||F(z)||^2 of the exact operator and ||z - z*||^2, in float64.
Metrics analytic_metrics(const torch::Tensor& exact_operator, const torch::Tensor& z,
                         const torch::Tensor& z_star);

// Orthogonal d x d matrix from the QR decomposition of a Gaussian one.
torch::Tensor random_orthogonal(int64_t d, at::Generator& gen);
// d values spaced geometrically from 1/condition to 1.
torch::Tensor spectrum(int64_t d, double condition);

}  // namespace saddle
