// IterateAverage: the averaged iterate reported beside the last one (stage 4 of game -> exchange
// -> solver -> metrics). Uniform averaging gives the ergodic average of Q-GenX's guarantees; the
// exponential moving average is what GAN practice evaluates.
#pragma once

#include <torch/types.h>

#include <string>

namespace saddle {

// uniform: the ergodic average of the points whose operators moved the iterates (X_{t+1/2} for
// the extra-gradient family), the average the Q-GenX / extra-gradient bounds speak of; weighted:
// the same weighted by each step's scale gamma_t; ema: an exponential moving average of the
// iterates X_{t+1} themselves (GAN practice).
enum class AveragingKind { kNone, kUniform, kWeighted, kEma };

AveragingKind parse_averaging(const std::string& name);  // "none" | "uniform" | "weighted" | "ema"
const char* averaging_name(AveragingKind kind);

class IterateAverage {
 public:
  IterateAverage() = default;
  // `ema_decay` in [0, 1) weighs the old average: avg <- decay * avg + (1 - decay) * z.
  IterateAverage(AveragingKind kind, double ema_decay);

  AveragingKind kind() const { return kind_; }
  bool enabled() const { return kind_ != AveragingKind::kNone; }
  // Folds a point in with `weight` (used by kWeighted only); a copy is kept, z is not modified.
  void update(const torch::Tensor& z, double weight = 1.0);
  // The current average (undefined before the first update or when disabled).
  const torch::Tensor& value() const { return average_; }
  int64_t count() const { return count_; }

  // Checkpoint support.
  double total_weight() const { return total_weight_; }
  void restore(torch::Tensor average, int64_t count, double total_weight);

 private:
  AveragingKind kind_ = AveragingKind::kNone;
  double ema_decay_ = 0.999;
  int64_t count_ = 0;
  double total_weight_ = 0.0;
  torch::Tensor average_;
};

}  // namespace saddle
