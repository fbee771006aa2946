#include "saddle/games/quadratic.h"

#include <cmath>

namespace saddle {

namespace {
torch::Tensor spd(int64_t n, double condition, at::Generator& gen) {
  torch::Tensor u = random_orthogonal(n, gen);
  return u.matmul(torch::diag(spectrum(n, condition))).matmul(u.t());
}
torch::Tensor quadratic_matrix(const torch::Tensor& p, const torch::Tensor& b,
                               const torch::Tensor& q) {
  torch::Tensor top = torch::cat({p, b}, -1);
  torch::Tensor bottom = torch::cat({-b.transpose(-1, -2), q}, -1);
  return torch::cat({top, bottom}, -2);
}
}  // namespace

QuadraticGame::QuadraticGame(const GameOptions& options) : AffineGame(options) {
  const int64_t n = options.dim;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  torch::Tensor p = spd(n, options.condition, gen);
  torch::Tensor q = spd(n, options.condition, gen);
  torch::Tensor b = random_orthogonal(n, gen)
                        .matmul(torch::diag(spectrum(n, 2.0)))
                        .matmul(random_orthogonal(n, gen).t());
  torch::Tensor z_star = torch::randn({2 * n}, gen, torch::kFloat64);
  torch::Tensor z0 = torch::randn({2 * n}, gen, torch::kFloat64);
  torch::Tensor dm, dq;
  if (noise_ == NoiseKind::kFiniteSum) {
    // Perturb only the coupling, so every sample stays monotone.
    const double s = options.noise_scale;
    torch::Tensor db =
        torch::randn({options.samples, n, n}, gen, torch::kFloat64) * (s / std::sqrt(n));
    torch::Tensor zero = torch::zeros_like(db);
    dm = quadratic_matrix(zero, db, zero);
    dq = torch::randn({options.samples, 2 * n}, gen, torch::kFloat64) * s;
  }
  finish({Player{"x", Role::kMin, 0, n}, Player{"y", Role::kMax, 0, n}}, quadratic_matrix(p, b, q),
         z_star, z0, dm, dq);
}

}  // namespace saddle
