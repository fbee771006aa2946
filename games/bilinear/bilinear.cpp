#include "saddle/games/bilinear.h"

#include <cmath>

namespace saddle {

namespace {
// [[0, A], [-A^T, 0]] for each A in a batch [..., n, n].
torch::Tensor bilinear_matrix(const torch::Tensor& a) {
  torch::Tensor zero = torch::zeros_like(a);
  torch::Tensor top = torch::cat({zero, a}, -1);
  torch::Tensor bottom = torch::cat({-a.transpose(-1, -2), zero}, -1);
  return torch::cat({top, bottom}, -2);
}
}  // namespace

BilinearGame::BilinearGame(const GameOptions& options) : AffineGame(options) {
  const int64_t n = options.dim;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  torch::Tensor u = random_orthogonal(n, gen);
  torch::Tensor v = random_orthogonal(n, gen);
  torch::Tensor a = u.matmul(torch::diag(spectrum(n, options.condition))).matmul(v.t());
  torch::Tensor z_star = torch::randn({2 * n}, gen, torch::kFloat64);
  torch::Tensor z0 = torch::randn({2 * n}, gen, torch::kFloat64);
  torch::Tensor dm, dq;
  if (noise_ == NoiseKind::kFiniteSum) {
    // Each sample perturbs A (keeping the bilinear structure) and the linear terms.
    const double s = options.noise_scale;
    torch::Tensor da =
        torch::randn({options.samples, n, n}, gen, torch::kFloat64) * (s / std::sqrt(n));
    dm = bilinear_matrix(da);
    dq = torch::randn({options.samples, 2 * n}, gen, torch::kFloat64) * s;
  }
  finish({Player{"x", Role::kMin, 0, n}, Player{"y", Role::kMax, 0, n}}, bilinear_matrix(a), z_star,
         z0, dm, dq);
}

}  // namespace saddle
