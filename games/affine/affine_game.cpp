#include "saddle/games/affine.h"

#include <fmt/format.h>

#include <cmath>

#include "saddle/device.h"
#include "saddle/error.h"

namespace saddle {

NoiseKind parse_noise(const std::string& name) {
  if (name == "none") return NoiseKind::kNone;
  if (name == "absolute") return NoiseKind::kAbsolute;
  if (name == "relative") return NoiseKind::kRelative;
  if (name == "finite-sum") return NoiseKind::kFiniteSum;
  throw Error("unknown noise '" + name + "' (expected none, absolute, relative or finite-sum)");
}

torch::Tensor random_orthogonal(int64_t d, at::Generator& gen) {
  torch::Tensor g = torch::randn({d, d}, gen, torch::kFloat64);
  auto [q, r] = torch::linalg_qr(g);
  // Fix the signs so the result is Haar-distributed and deterministic.
  return q * torch::sign(torch::diagonal(r)).unsqueeze(0);
}

torch::Tensor spectrum(int64_t d, double condition) {
  if (d == 1) return torch::ones({1}, torch::kFloat64);
  return torch::logspace(-std::log10(condition), 0.0, d, 10.0, torch::kFloat64);
}

GameOptions checked_analytic_options(GameOptions options) {
  SADDLE_CHECK(options.dim > 0, "invalid --dim ", options.dim, " (must be > 0)");
  SADDLE_CHECK(options.condition >= 1.0 && std::isfinite(options.condition), "invalid --condition ",
               options.condition, " (must be >= 1)");
  SADDLE_CHECK(options.noise_scale >= 0.0 && std::isfinite(options.noise_scale),
               "invalid --noise-scale ", options.noise_scale, " (must be >= 0)");
  SADDLE_CHECK(options.batch >= 0, "invalid --batch ", options.batch, " (must be >= 0; 0: 1)");
  parse_noise(options.noise);
  if (options.batch == 0) options.batch = 1;
  return options;
}

torch::Tensor add_oracle_noise(torch::Tensor f, NoiseKind kind, double scale, at::Generator& gen) {
  if (kind != NoiseKind::kAbsolute && kind != NoiseKind::kRelative) return f;
  const torch::Tensor xi = torch::randn({f.numel()}, gen, torch::kFloat32).to(f.device());
  if (kind == NoiseKind::kAbsolute) return f.add_(xi, scale);
  return f.addcmul(f, xi, scale);
}

Metrics analytic_metrics(const torch::Tensor& exact_operator, const torch::Tensor& z,
                         const torch::Tensor& z_star) {
  const double op = exact_operator.to(torch::kFloat64).square().sum().item<double>();
  const double dist =
      (z.to(torch::kFloat64) - z_star.to(torch::kFloat64)).square().sum().item<double>();
  return {{"operator_norm_sq", op}, {"distance_sq", dist}};
}

AffineGame::AffineGame(const GameOptions& options)
    : options_(checked_analytic_options(options)), noise_(parse_noise(options.noise)) {
  SADDLE_CHECK(noise_ != NoiseKind::kFiniteSum || options.samples > 1, "invalid --samples ",
               options.samples, " (a finite sum needs at least 2)");
  // The games hold dense (2 dim)^2 matrices, one per finite-sum sample, built in float64 on the
  // CPU (three at a time at the peak) and kept in float32 on the device.
  const double side = 2.0 * static_cast<double>(options.dim);
  const double matrices =
      1.0 + (noise_ == NoiseKind::kFiniteSum ? static_cast<double>(options.samples) : 0.0);
  const std::string what =
      noise_ == NoiseKind::kFiniteSum
          ? fmt::format("--dim {} with --samples {}", options.dim, options.samples)
          : fmt::format("--dim {}", options.dim);
  check_memory(3.0 * 8.0 * side * side * matrices, torch::kCPU, what + " (building the game)");
  check_memory(4.0 * side * side * matrices, options.device, what);
}

void AffineGame::finish(std::vector<Player> players, torch::Tensor m, torch::Tensor z_star,
                        torch::Tensor z0, torch::Tensor sample_dm, torch::Tensor sample_dq) {
  // Built in float64 on the CPU (the same instance on every device), run in float32 (the dtype
  // that the exchange quantizes) on the game's device.
  const torch::Device device = options_.device;
  m_ = m.to(device, torch::kFloat32).contiguous();
  torch::Tensor q = -m.matmul(z_star);
  q_ = q.to(device, torch::kFloat32);
  z_star_ = z_star.to(device, torch::kFloat32);
  if (sample_dm.defined()) {
    // Center the perturbations exactly so that the finite sum's mean is the game.
    sample_dm = sample_dm - sample_dm.mean(0, true);
    sample_dq = sample_dq - sample_dq.mean(0, true);
    sample_m_ = (m.unsqueeze(0) + sample_dm).to(device, torch::kFloat32).contiguous();
    sample_q_ = (q.unsqueeze(0) + sample_dq).to(device, torch::kFloat32).contiguous();
  }
  init_params(std::move(players), z0.to(device, torch::kFloat32));
}

torch::Tensor AffineGame::exact_operator(const torch::Tensor& z) const {
  return torch::addmv(q_, m_, z);
}

torch::Tensor AffineGame::operator_at(at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double scale = options_.noise_scale;
  const double batch = static_cast<double>(options_.batch);
  switch (noise_) {
    case NoiseKind::kNone: return exact_operator(params_);
    case NoiseKind::kAbsolute:
    case NoiseKind::kRelative:
      // The mean of `batch` draws: the noise scale over sqrt(batch).
      return add_oracle_noise(exact_operator(params_), noise_, scale / std::sqrt(batch), gen);
    case NoiseKind::kFiniteSum: {
      // The mean of M_s z + q_s over `batch` drawn samples s: one matrix-vector product per draw,
      // on views of the stored matrices (a gather of the drawn [d, d] matrices would copy them).
      // The draws are made on the CPU generator and read there.
      const torch::Tensor idx =
          torch::randint(options_.samples, {options_.batch}, gen, torch::kInt64);
      const int64_t* s = idx.data_ptr<int64_t>();
      torch::Tensor f = torch::addmv(sample_q_[s[0]], sample_m_[s[0]], params_);
      for (int64_t b = 1; b < options_.batch; ++b) {
        f.addmv_(sample_m_[s[b]], params_).add_(sample_q_[s[b]]);
      }
      return options_.batch > 1 ? f.div_(batch) : f;
    }
  }
  return exact_operator(params_);
}

Metrics AffineGame::metrics() {
  torch::NoGradGuard no_grad;
  return analytic_metrics(exact_operator(params_), params_, z_star_);
}

}  // namespace saddle
