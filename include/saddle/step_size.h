// StepSize: how large a step the solver takes at iteration t (stage 3 of game -> exchange ->
// solver -> metrics). A solver moves each player by its learning rate (--lr, --player-lr) times
// scale(). Every rule is computed from what every rank holds identically (the averaged operators,
// the iterates, and each rank's decoded operator, which every rank decodes), summed in double in
// one fixed order (src/detail/reduce.h): ranks never disagree on a step, whatever their thread
// counts or devices.
//
//   constant  scale = 1.
//   qgenx     the adaptive rule of Q-GenX (Ramezani-Kebrya et al., ICLR 2023), from the ranks'
//             own quantized operators (see QgenxStepSize below).
//   adagrad   scale_t = 1 / sqrt(1 + sum_{s<t} ||V_{s+1/2} - Vhat_s||^2) on the averaged
//             operators (AdaProx, Antonakopoulos et al., 2021): the rule saddle used to call
//             "adaptive". Not scale-free: it only works when gamma_0 and the operator's scale fit.
//   auto      the default of the extra-gradient family: scale-free, it grows and shrinks (see
//             AutoStepSize below).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace saddle {

enum class StepSizeKind { kConstant, kQgenx, kAdaGrad, kAuto };

// "constant" | "qgenx" | "adagrad" | "auto" ("adaptive" is read as "qgenx").
StepSizeKind parse_step_size(const std::string& name);
const char* step_size_name(StepSizeKind kind);

// What a solver measures in iteration t, in the metric of the learning rates (lr = each
// coordinate's learning rate, so the rules see the preconditioned operator):
struct StepObservation {
  // ||V_{t+1/2} - Vhat_t||^2 of the averaged operators (Vhat_t = 0 when there is no extrapolation).
  double sq_difference = 0.0;
  // sum over ranks k of ||V^k_{t+1/2} - Vhat^k_t||^2, each rank's own decoded operator; equals
  // sq_difference with one rank. NaN when the exchange does not keep the ranks' operators.
  double sq_difference_ranks = 0.0;
  // ||sqrt(lr) (V_{t+1/2} - Vhat_t)||^2 and ||(X_{t+1/2} - X_t) / sqrt(lr)||^2: their ratio is the
  // local Lipschitz constant along the extrapolation (0 displacement: none was taken).
  double sq_scaled_difference = 0.0;
  double sq_scaled_displacement = 0.0;
  // The same between this step's half point and the previous step's (a second direction probed
  // for free; 0 displacement when there is none).
  double sq_scaled_difference_previous = 0.0;
  double sq_scaled_displacement_previous = 0.0;
  // ||sqrt(lr) V_{t+1/2}||^2: the operator's size, whose growth betrays a step that is too long.
  double sq_scaled_operator = 0.0;
  // The part of sq_scaled_difference that is the ranks' independent noise (each rank's samples
  // and quantization), not a change of the operator: NaN when not measured (one rank, no rank
  // sums, a rule other than auto).
  // With a = ||V_{t+1/2} - Vhat_t||^2 of the average and b = sum_k ||V^k_{t+1/2} - Vhat^k_t||^2,
  // E[a] = ||s||^2 + sigma^2 / K and E[b] = K (||s||^2 + sigma^2) for a change s of the expected
  // operator and independent noises of variance sigma^2 on each rank, so
  // (K a - b / K) / (K - 1) (the mean of the ranks' pairwise inner products) estimates ||s||^2
  // without bias, and the rest of a is noise. In high dimension the cross terms of independent
  // noises nearly cancel, so the estimate is sharp even for K = 2. It assumes the ranks draw
  // independent samples of one distribution (every built-in game does); ranks holding different
  // data would make the differences between them count as noise.
  double sq_scaled_noise = std::numeric_limits<double>::quiet_NaN();
  int ranks = 1;
};

class StepSize {
 public:
  virtual ~StepSize() = default;
  virtual StepSizeKind kind() const = 0;
  // The scale of iteration t's extrapolation, and (before observe) of its update.
  virtual double scale() const = 0;
  // Records iteration t's measurements. Afterwards update_scale() is the scale of t's update
  // (only auto may make it smaller than the extrapolation's) and scale() that of t + 1.
  void observe(const StepObservation& o) {
    update_ = update_for(o);
    advance(o);
  }
  double update_scale() const { return update_; }
  // Whether t's half step should be redone with scale() (auto, after a clearly unstable
  // extrapolation); the solver asks after measuring, before observe().
  virtual bool retry_half_step(const StepObservation& o) { return false; }

  // Everything the rule accumulates, for checkpoints.
  virtual std::vector<double> state() const { return {}; }
  virtual void set_state(const std::vector<double>& state) {}

 protected:
  virtual double update_for(const StepObservation& o) { return scale(); }
  virtual void advance(const StepObservation& o) = 0;

 private:
  double update_ = 1.0;
};

class ConstantStepSize final : public StepSize {
 public:
  StepSizeKind kind() const override { return StepSizeKind::kConstant; }
  double scale() const override { return 1.0; }

 protected:
  void advance(const StepObservation&) override {}
};

class AdaGradStepSize final : public StepSize {
 public:
  StepSizeKind kind() const override { return StepSizeKind::kAdaGrad; }
  double scale() const override;
  std::vector<double> state() const override { return {sum_}; }
  void set_state(const std::vector<double>& state) override;

 protected:
  void advance(const StepObservation& o) override;

 private:
  double sum_ = 0.0;
};

// Q-GenX's rule (Ramezani-Kebrya et al., ICLR 2023): see src/step_size.cpp for the equation it
// follows and the quantities that enter it.
class QgenxStepSize final : public StepSize {
 public:
  StepSizeKind kind() const override { return StepSizeKind::kQgenx; }
  double scale() const override;
  std::vector<double> state() const override { return {sum_, static_cast<double>(ranks_)}; }
  void set_state(const std::vector<double>& state) override;

 protected:
  void advance(const StepObservation& o) override;

 private:
  double sum_ = 0.0;
  int ranks_ = 1;
};

// auto: an extra-gradient step that estimates the operator's local Lipschitz constant L along
// each extrapolation (||sqrt(lr) dV|| / ||dX / sqrt(lr)||, a lower bound that one direction gives;
// the largest recent estimate is kept, forgotten by 1% per iteration) and keeps the step near
// nu / L (nu = 0.9, or 0.45 for the optimistic variants): it grows by at most 25% per iteration
// while the estimates allow (a gamma_0 a thousand times too small recovers in about 30 iterations),
// shrinks at once when they do not, takes the update conservatively (min(extrapolation, nu / L):
// "explore aggressively, update conservatively", Hsieh et al., 2020) and redoes an extrapolation
// that was clearly unstable (L * step > 2: a gamma_0 far too large costs one extra operator call).
// Under noise the change of the operator between two calls is partly the noise of the two calls,
// which read as curvature drives the step toward zero. With several ranks the rule measures that
// noise from the ranks' own operators (StepObservation::sq_scaled_noise: their pairwise inner
// products carry the signal alone) and leaves it out; where it is most of the change, the
// estimates are averaged instead of maximized (a maximum of noisy estimates measures the noise).
// With one rank the noise cannot be told apart: a floor, the largest step reached so far divided
// by sqrt(1 + t / 100), keeps the step at the O(1/sqrt(t)) decay of stochastic approximation
// instead of letting the noise drive it to zero. Early estimates see only the directions
// the iterate has so far, so the peak can exceed what the operator allows; the floor then holds a
// step that diverges in a direction the estimates have not seen yet. The operator's size tells:
// when its recent (log) average rises tenfold above its long-run average, the peak is halved
// (noise makes the size fluctuate around a level, divergence makes it grow geometrically). It is
// scale-free: the same run on F scaled by c takes steps scaled by 1 / c.
class AutoStepSize final : public StepSize {
 public:
  // nu: the extra-gradient step is stable for step * L < 1, the optimistic (Popov,
  // forward-reflected-backward) one for step * L < 1/2 (Malitsky & Tam, 2020, Thm 2.5).
  static constexpr double kExtraGradientSafety = 0.9;
  static constexpr double kOptimisticSafety = 0.45;
  static constexpr double kGrowth = 1.25;   // per iteration, at most
  static constexpr double kUnstable = 2.2;  // L * step / nu above this: redo the half step
  static constexpr double kFloorHalfLife = 100.0;
  static constexpr double kForget = 0.99;   // per iteration, of the largest Lipschitz estimate
  static constexpr double kRecent = 0.3;    // weight of the newest log size in the recent average
  static constexpr double kLongRun = 0.03;  // ... and in the long-run average
  static constexpr double kGrowthAlarm = 10.0;  // recent / long-run size that halves the peak
  // Where the ranks' noise is more than this share of the measured change, the estimates are
  // averaged (weight kNoisyWeight per iteration) rather than maximized.
  static constexpr double kNoisyShare = 0.5;
  static constexpr double kNoisyWeight = 0.1;

  // max_scale > 0 caps gamma_t / gamma_0 (a known-safe gamma_0 becomes a ceiling the rule adapts
  // below; for games whose curvature one extrapolation underestimates, such as GANs).
  explicit AutoStepSize(double safety = kExtraGradientSafety, double max_scale = 0.0)
      : safety_(safety),
        max_scale_(max_scale),
        scale_(max_scale > 0.0 ? std::min(1.0, max_scale) : 1.0) {}
  StepSizeKind kind() const override { return StepSizeKind::kAuto; }
  double scale() const override { return scale_; }
  bool retry_half_step(const StepObservation& o) override;
  std::vector<double> state() const override;
  void set_state(const std::vector<double>& state) override;

 protected:
  double update_for(const StepObservation& o) override;
  void advance(const StepObservation& o) override;

 private:
  double lipschitz(const StepObservation& o) const;           // along the extrapolation; 0: unknown
  double lipschitz_previous(const StepObservation& o) const;  // between half points; 0: unknown
  double floor(const StepObservation& o) const;  // 0 where the ranks' noise is measured
  static bool noisy(const StepObservation& o);

  double safety_;
  double max_scale_;
  double scale_;
  double peak_ = 0.0;       // the largest update scale taken without a sign of instability
  double lipschitz_ = 0.0;  // the largest recent estimate (slowly forgotten)
  int64_t steps_ = 0;
  int retries_ = 0;          // within the current iteration
  double last_ratio_ = 0.0;  // L * step of the last retried extrapolation
  // Averages of log ||sqrt(lr) V_{t+1/2}||^2 (NaN until the first size is seen).
  double recent_size_ = std::numeric_limits<double>::quiet_NaN();
  double long_run_size_ = std::numeric_limits<double>::quiet_NaN();
};

// `safety` is auto's nu and `max_scale` the largest gamma_t / gamma_0 it may take (0: no limit);
// the other rules ignore both.
std::unique_ptr<StepSize> make_step_size(StepSizeKind kind,
                                         double safety = AutoStepSize::kExtraGradientSafety,
                                         double max_scale = 0.0);

}  // namespace saddle
