// The game table: each shipped game's factory and the defaults each solver trains it with. The
// numbers come from the measurements recorded in experiments/README.md (commands there).
#include "saddle/games/registry.h"

#include <fmt/format.h>

#include <tuple>

#include "saddle/error.h"
#include "saddle/games/bilinear.h"
#include "saddle/games/mog.h"
#include "saddle/games/quadratic.h"
#include "saddle/games/separable.h"
#include "saddle/games/wgan_gp.h"

namespace saddle {

RunDefaults RunDefaults::with(const RunDefaults& over) const {
  RunDefaults out = *this;
  auto take = [](auto& field, const auto& value) {
    if (value) field = value;
  };
  take(out.iterations, over.iterations);
  take(out.lr, over.lr);
  take(out.player_lr, over.player_lr);
  take(out.step_size, over.step_size);
  take(out.step_max, over.step_max);
  take(out.precondition, over.precondition);
  take(out.beta1, over.beta1);
  take(out.beta2, over.beta2);
  take(out.averaging, over.averaging);
  take(out.ema_decay, over.ema_decay);
  take(out.batch, over.batch);
  take(out.latent, over.latent);
  take(out.filters, over.filters);
  take(out.gan_loss, over.gan_loss);
  take(out.dim, over.dim);
  take(out.divergence_retries, over.divergence_retries);
  return out;
}

std::string RunDefaults::describe() const {
  std::string out;
  auto add = [&out](const char* flag, const auto& value) {
    if (value) out += fmt::format("{}--{} {}", out.empty() ? "" : " ", flag, *value);
  };
  add("iters", iterations);
  add("step-size", step_size);
  add("step-max", step_max);
  add("precondition", precondition);
  add("lr", lr);
  if (player_lr) {
    for (const auto& rate : *player_lr) add("player-lr", std::optional<std::string>(rate));
  }
  add("beta1", beta1);
  add("beta2", beta2);
  add("averaging", averaging);
  add("ema-decay", ema_decay);
  add("batch", batch);
  add("latent", latent);
  add("filters", filters);
  add("gan-loss", gan_loss);
  add("dim", dim);
  add("divergence-retries", divergence_retries);
  return out;
}

RunDefaults GameSpec::defaults_for(const std::string& solver) const {
  for (const auto& pairing : solvers) {
    if (pairing.solver == solver) return defaults.with(pairing.defaults);
  }
  return defaults;
}

std::string GameSpec::poor_pairing(const std::string& solver) const {
  for (const auto& pairing : solvers) {
    if (pairing.solver == solver) return pairing.poor;
  }
  return "";
}

SolverOptions GameSpec::solver_options(const std::string& solver) const {
  const RunDefaults d = defaults_for(solver);
  SolverOptions options;
  options.step_size(d.step_size ? parse_step_size(*d.step_size) : solver_spec(solver).default_step);
  if (d.lr) options.lr(*d.lr);
  if (d.step_max) options.step_max(*d.step_max);
  if (d.precondition) options.precondition(parse_precondition(*d.precondition));
  if (d.player_lr) options.player_lr(parse_player_rates(*d.player_lr));
  if (d.beta1) options.beta1(*d.beta1);
  if (d.beta2) options.beta2(*d.beta2);
  return options;
}

GameOptions GameSpec::game_options(const std::string& solver) const {
  const RunDefaults d = defaults_for(solver);
  GameOptions options;
  if (d.batch) options.batch = *d.batch;
  if (d.latent) options.latent = *d.latent;
  if (d.filters) options.filters = *d.filters;
  if (d.gan_loss) options.gan_loss = *d.gan_loss;
  if (d.dim) options.dim = *d.dim;
  return options;
}

namespace {

RunDefaults lr(double rate) {
  RunDefaults d;
  d.lr = rate;
  return d;
}

RunDefaults iterations(int64_t n) {
  RunDefaults d;
  d.iterations = n;
  return d;
}

SolverPairing trains(std::string solver, RunDefaults defaults) {
  return SolverPairing{std::move(solver), std::move(defaults), ""};
}

SolverPairing poor(std::string solver, std::string reason, RunDefaults defaults = {}) {
  return SolverPairing{std::move(solver), std::move(defaults), std::move(reason)};
}

std::vector<GameSpec> make_table() {
  std::vector<GameSpec> table;

  // Bilinear: monotone, not strongly. The extra-gradient family's auto step is scale-free (any
  // --lr reaches distance_sq 1e-8 within about 1000 iterations at dim 10 and 128, 1 or 4 ranks);
  // the Adam family needs a small constant step and reaches 1e-2 of the start
  // (experiments/README.md).
  GameSpec bilinear{"bilinear",
                    "x^T A y + b^T x + c^T y, a known saddle point",
                    true,
                    [](const GameOptions& o) { return std::make_unique<BilinearGame>(o); },
                    iterations(1000),
                    {},
                    {}};
  RunDefaults adam_bilinear = lr(0.01).with(iterations(2500));
  bilinear.solvers = {
      poor("gda",
           "simultaneous gradient descent-ascent spirals away from a bilinear game's equilibrium "
           "for every constant step; use eg, ogda or qgenx"),
      poor("alt-gda",
           "alternating gradient descent-ascent cycles around a bilinear game's equilibrium "
           "without reaching it; use eg, ogda or qgenx"),
      // Popov's method takes a smaller safe step (safety 0.45 against 0.9).
      trains("ogda", iterations(2000)),
      trains("extra-adam", adam_bilinear),
      trains("optimistic-adam", adam_bilinear),
  };
  bilinear.headline = {"distance_sq", true, true};
  // The separable game: the bilinear game's behaviour at 10^6 coordinates and more, for the
  // exchange's measurements (experiments/README.md, "An emulated cluster").
  GameSpec separable = bilinear;
  separable.name = "separable";
  separable.description = "(x-x*)^T diag(a) (y-y*), 10^6 coordinates by default, a known saddle";
  separable.make = [](const GameOptions& o) { return std::make_unique<SeparableBilinearGame>(o); };
  separable.defaults.dim = 500000;
  for (auto& pairing : separable.solvers) {
    // Per-coordinate steps settle more slowly on its weakest couplings than on the dense game.
    if (pairing.solver == "extra-adam") pairing.defaults = lr(0.03).with(iterations(2500));
    if (pairing.solver == "optimistic-adam") pairing.defaults = lr(0.01).with(iterations(5000));
  }
  table.push_back(std::move(bilinear));
  table.push_back(std::move(separable));

  // Quadratic: strongly monotone, every solver converges linearly. Plain gradient steps take a
  // larger constant step; the Adam family a long second-moment memory.
  GameSpec quadratic{"quadratic",
                     "strongly monotone quadratic game, a known saddle point",
                     true,
                     [](const GameOptions& o) { return std::make_unique<QuadraticGame>(o); },
                     iterations(1000),
                     {},
                     {}};
  RunDefaults adam_quadratic = lr(0.01).with(iterations(3000));
  adam_quadratic.beta2 = 0.9999;
  quadratic.solvers = {
      trains("gda", lr(0.3)),
      trains("alt-gda", lr(0.3)),
      trains("extra-adam", adam_quadratic),
      trains("optimistic-adam", adam_quadratic),
  };
  quadratic.headline = {"distance_sq", true, true};
  table.push_back(std::move(quadratic));

  // GANs: plain gradient steps (no extrapolation, no per-coordinate scaling) cycle or collapse.
  auto plain_gan_pairings = [](const std::string& use) {
    const std::string reason =
        "plain gradient steps cycle or collapse on GANs (mog8: at most 3 of 8 modes for lr "
        "1e-3..1e-1, experiments/README.md); use " +
        use;
    return std::vector<SolverPairing>{poor("gda", reason), poor("alt-gda", reason)};
  };

  // Mixtures of Gaussians, 2-D latents, batch 256. The generator's exponential average (decay
  // 0.99 / 0.995, reported as modes_captured_avg) is what captures the modes: the last iterate's
  // clusters jitter by more than the 3 std that count as a capture. mog8 trains with the WGAN-GP
  // loss, mog25 only with the non-saturating loss and a generator 8x faster than its critic.
  // Medians over seeds 0-4 (experiments/README.md): mog8 extra-adam 8/8 averaged, 7/8 last;
  // mog25 extra-adam 20/25 averaged, 15/25 last. qgenx trains here in Adam's metric with Adam's
  // momentum (--precondition adam, a constant step: Extra-Adam's update in the Q-GenX template):
  // mog8 8/8 averaged (8, 8, 0, 8, 0), mog25 22/25 (22, 22, 18, 18, 22). Without it, or with the
  // metric alone, the extra-gradient family diverges or finds at most 6 of 8.
  const std::string extragradient_on_mog =
      "without Adam's per-coordinate scaling the extra-gradient family diverges with the WGAN-GP "
      "loss and captures at most 6 of 8 modes (averaged) with the non-saturating one on mog8 "
      "(experiments/README.md); use extra-adam, optimistic-adam or qgenx (which takes "
      "--precondition adam here)";
  RunDefaults adam_qgenx;
  adam_qgenx.precondition = "adam";
  adam_qgenx.step_size = "constant";
  RunDefaults mog8 = lr(5e-3).with(iterations(4000));
  mog8.averaging = "ema";
  mog8.ema_decay = 0.99;
  mog8.batch = MogGame::kDefaultBatch;
  mog8.latent = 2;
  mog8.filters = 64;
  mog8.gan_loss = "wgan-gp";
  RunDefaults mog25 = mog8.with(lr(1e-3)).with(iterations(5000));
  mog25.player_lr = std::vector<std::string>{"generator=8e-3"};
  mog25.ema_decay = 0.995;
  mog25.filters = 128;
  mog25.gan_loss = "nonsaturating";
  const std::tuple<const char*, const char*, RunDefaults> mogs[] = {
      {"mog8", "a ring of 8 Gaussians (radius 2, std 0.02) learned by a GAN of small MLPs", mog8},
      {"mog25", "a 5x5 grid of Gaussians (spacing 2, std 0.05) learned by a GAN of small MLPs",
       mog25}};
  for (const auto& [name, description, defaults] : mogs) {
    GameSpec mog{name,
                 description,
                 false,
                 [name = std::string(name)](const GameOptions& o) {
                   return std::make_unique<MogGame>(name, o);
                 },
                 defaults,
                 plain_gan_pairings("extra-adam, optimistic-adam or qgenx"),
                 {}};
    for (const char* solver : {"eg", "ogda"}) {
      mog.solvers.push_back(poor(solver, extragradient_on_mog));
    }
    mog.solvers.push_back(trains("qgenx", adam_qgenx));
    mog.headline = {"modes_captured", false, false};
    table.push_back(std::move(mog));
  }

  // WGAN-GP on images (DCGAN-32 players). The extra-gradient family takes a constant step 0.01:
  // at 3000 iterations (2 ranks, 4-bit ALQ, 16 filters, seeds 0-4) it reached FID 45.0-52.6 on
  // the 4 seeds that trained (seed 2 diverged, as 0.005 did there); auto, capped at 0.01, reached
  // 142-180 (experiments/README.md). auto keeps the step near nu / L for the local Lipschitz
  // constant L along each extrapolation; on a GAN that L grows as the critic sharpens (measured on
  // 2 ranks: L * 0.01 from about 1 at first to 3 by iteration 300, spikes above 10), so its steps
  // fall to a small fraction of the step that trains best. The Adam family takes the reference
  // configuration of Gidel et al. (2019): generator 5e-5, critic 5e-4, betas (0.5, 0.9).
  // A divergence (seed 2 above) goes back to the last snapshot with the learning rates halved,
  // up to 3 times, instead of ending a long run: seed 2 then finished at FID 68.3.
  RunDefaults wgan_defaults = lr(0.01).with(iterations(2000));
  wgan_defaults.divergence_retries = 3;
  RunDefaults constant_step;
  constant_step.step_size = "constant";
  RunDefaults adam_wgan = lr(5e-5);
  adam_wgan.player_lr = std::vector<std::string>{"critic=5e-4"};
  GameSpec wgan{"wgan-gp",
                "WGAN-GP with DCGAN-32 players on Fashion-MNIST or CIFAR-10",
                false,
                [](const GameOptions& o) { return std::make_unique<WganGpGame>(o); },
                wgan_defaults,
                plain_gan_pairings("extra-adam, optimistic-adam or qgenx"),
                {}};
  for (const char* solver : {"eg", "ogda", "qgenx"}) {
    wgan.solvers.push_back(trains(solver, constant_step));
  }
  wgan.solvers.push_back(trains("extra-adam", adam_wgan));
  wgan.solvers.push_back(trains("optimistic-adam", adam_wgan));
  wgan.headline = {"fid", true, false};
  table.push_back(std::move(wgan));
  return table;
}

}  // namespace

const std::vector<GameSpec>& game_specs() {
  static const std::vector<GameSpec> kTable = make_table();
  return kTable;
}

const GameSpec& game_spec(const std::string& name) {
  for (const auto& spec : game_specs()) {
    if (spec.name == name) return spec;
  }
  std::string known;
  for (const auto& n : game_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown game '" + name + "' (expected one of: " + known + ")");
}

const std::vector<std::string>& game_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& spec : game_specs()) names.push_back(spec.name);
    return names;
  }();
  return kNames;
}

const std::vector<std::string>& analytic_game_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& spec : game_specs()) {
      if (spec.analytic) names.push_back(spec.name);
    }
    return names;
  }();
  return kNames;
}

std::unique_ptr<Game> make_game(const std::string& name, const GameOptions& options) {
  return game_spec(name).make(options);
}

}  // namespace saddle
