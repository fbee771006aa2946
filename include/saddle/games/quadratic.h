// A strongly monotone quadratic game
//     f(x, y) = 1/2 x^T P x + x^T B y - 1/2 y^T Q y + b^T x + c^T y,
// with P, Q symmetric positive definite (eigenvalues from 1/condition to 1) and a coupling B of
// norm 1. F(x, y) = (P x + B y + b, Q y - B^T x - c) is strongly monotone, so every solver with a
// small enough step converges linearly to the known equilibrium.
#pragma once

#include "saddle/games/affine.h"

namespace saddle {

class QuadraticGame final : public AffineGame {
 public:
  explicit QuadraticGame(const GameOptions& options);
  std::string name() const override { return "quadratic"; }
};

}  // namespace saddle
