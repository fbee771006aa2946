// The separable bilinear game, a large game for measuring the exchange: f(x, y) =
// (x - x*)^T diag(a) (y - y*), x minimizes, y maximizes, so F(x, y) = (a * (y - y*),
// -a * (x - x*)). The couplings a are geometrically spaced from 1/condition to 1 (in a random
// order, so that every chunk of the exchange sees every scale) and (x*, y*) is random: monotone
// but not strongly, like the dense bilinear game, with the same extra-gradient behaviour. It
// stores O(dim) numbers where the dense game stores (2 dim)^2, so 10^6-10^7 coordinates fit
// (the dense game stops near dim 4096), and an operator costs one pass over them: a game on
// which the link, not the arithmetic, sets the time.
#pragma once

#include "saddle/games/affine.h"

namespace saddle {

class SeparableBilinearGame final : public Game {
 public:
  explicit SeparableBilinearGame(const GameOptions& options);
  std::string name() const override { return "separable"; }
  torch::Tensor operator_at(at::Generator& gen) override;
  Metrics metrics() override;
  std::optional<torch::Tensor> equilibrium() const override { return z_star_; }

 private:
  torch::Tensor exact_operator() const;

  GameOptions options_;
  NoiseKind noise_;
  torch::Tensor coupling_;  // a, [dim]
  torch::Tensor z_star_;    // [2 dim]
};

}  // namespace saddle
