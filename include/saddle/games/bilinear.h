// The bilinear game f(x, y) = x^T A y + b^T x + c^T y (x minimizes, y maximizes), with
// F(x, y) = (A y + b, -(A^T x + c)). A = U diag(s) V^T with singular values from 1/condition to 1,
// and b, c chosen so that a random (x*, y*) is the equilibrium. Monotone but not strongly:
// simultaneous GDA diverges on it, extra-gradient converges.
#pragma once

#include "saddle/games/affine.h"

namespace saddle {

class BilinearGame final : public AffineGame {
 public:
  explicit BilinearGame(const GameOptions& options);
  std::string name() const override { return "bilinear"; }
};

}  // namespace saddle
