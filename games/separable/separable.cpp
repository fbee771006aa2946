#include "saddle/games/separable.h"

#include <cmath>

#include "saddle/device.h"
#include "saddle/error.h"

namespace saddle {

SeparableBilinearGame::SeparableBilinearGame(const GameOptions& options)
    : options_(checked_analytic_options(options)), noise_(parse_noise(options.noise)) {
  SADDLE_CHECK(noise_ != NoiseKind::kFiniteSum,
               "the separable game has no finite-sum oracle (--noise none, absolute or relative)");
  const int64_t n = options.dim;
  // a, z* and z0 in float64 on the CPU, then float32 on the device (about 24 bytes a coordinate).
  check_memory(8.0 * 5.0 * static_cast<double>(n), torch::kCPU,
               "--dim " + std::to_string(n) + " (building the game)");
  check_memory(4.0 * 5.0 * static_cast<double>(n), options.device, "--dim " + std::to_string(n));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const torch::Tensor order = torch::randperm(n, gen, torch::kInt64);
  const torch::Tensor a = spectrum(n, options.condition).index_select(0, order);
  const torch::Tensor z_star = torch::randn({2 * n}, gen, torch::kFloat64);
  const torch::Tensor z0 = torch::randn({2 * n}, gen, torch::kFloat64);
  coupling_ = a.to(options.device, torch::kFloat32);
  z_star_ = z_star.to(options.device, torch::kFloat32);
  init_params({Player{"x", Role::kMin, 0, n}, Player{"y", Role::kMax, 0, n}},
              z0.to(options.device, torch::kFloat32));
}

torch::Tensor SeparableBilinearGame::exact_operator() const {
  const int64_t n = options_.dim;
  const torch::Tensor d = params_ - z_star_;
  torch::Tensor f = torch::empty_like(params_);
  torch::Tensor top = f.narrow(0, 0, n), bottom = f.narrow(0, n, n);
  torch::mul_out(top, coupling_, d.narrow(0, n, n));
  torch::mul_out(bottom, coupling_, d.narrow(0, 0, n)).neg_();
  return f;
}

torch::Tensor SeparableBilinearGame::operator_at(at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double scale = options_.noise_scale / std::sqrt(static_cast<double>(options_.batch));
  return add_oracle_noise(exact_operator(), noise_, scale, gen);
}

Metrics SeparableBilinearGame::metrics() {
  torch::NoGradGuard no_grad;
  return analytic_metrics(exact_operator(), params_, z_star_);
}

}  // namespace saddle
