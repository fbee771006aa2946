// IterateAverage: the averaged iterate reported beside the last one (stage 4 of game -> exchange
// -> solver -> metrics). Uniform averaging gives the ergodic average of Q-GenX's guarantees; the
// exponential moving average is what GAN practice evaluates.
#pragma once

#include <torch/types.h>

#include <string>

namespace saddle {

enum class AveragingKind { kNone, kUniform, kEma };

AveragingKind parse_averaging(const std::string& name);  // "none" | "uniform" | "ema"
const char* averaging_name(AveragingKind kind);

class IterateAverage {
 public:
  IterateAverage() = default;
  // `ema_decay` in [0, 1) weighs the old average: avg <- decay * avg + (1 - decay) * z.
  IterateAverage(AveragingKind kind, double ema_decay);

  AveragingKind kind() const { return kind_; }
  bool enabled() const { return kind_ != AveragingKind::kNone; }
  // Folds the iterate z in (a copy is kept; z is not modified).
  void update(const torch::Tensor& z);
  // The current average (undefined before the first update or when disabled).
  const torch::Tensor& value() const { return average_; }
  int64_t count() const { return count_; }

  // Checkpoint support.
  void restore(torch::Tensor average, int64_t count);

 private:
  AveragingKind kind_ = AveragingKind::kNone;
  double ema_decay_ = 0.999;
  int64_t count_ = 0;
  torch::Tensor average_;
};

}  // namespace saddle
