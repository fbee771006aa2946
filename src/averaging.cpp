#include "saddle/averaging.h"

#include "saddle/error.h"

namespace saddle {

AveragingKind parse_averaging(const std::string& name) {
  if (name == "none") return AveragingKind::kNone;
  if (name == "uniform") return AveragingKind::kUniform;
  if (name == "weighted") return AveragingKind::kWeighted;
  if (name == "ema") return AveragingKind::kEma;
  throw Error("unknown averaging '" + name + "' (expected none, uniform, weighted or ema)");
}

const char* averaging_name(AveragingKind kind) {
  switch (kind) {
    case AveragingKind::kNone: return "none";
    case AveragingKind::kUniform: return "uniform";
    case AveragingKind::kWeighted: return "weighted";
    case AveragingKind::kEma: return "ema";
  }
  return "none";
}

IterateAverage::IterateAverage(AveragingKind kind, double ema_decay)
    : kind_(kind), ema_decay_(ema_decay) {
  SADDLE_CHECK(ema_decay >= 0.0 && ema_decay < 1.0, "invalid EMA decay ", ema_decay,
               " (expected 0 <= decay < 1)");
}

void IterateAverage::update(const torch::Tensor& z, double weight) {
  if (kind_ == AveragingKind::kNone) return;
  torch::NoGradGuard no_grad;
  ++count_;
  total_weight_ += weight;
  if (!average_.defined()) {
    average_ = z.detach().clone();
    return;
  }
  // Uniform: avg_n = avg_{n-1} + (z - avg_{n-1}) / n. Weighted: the same with w_n / sum w.
  // EMA: avg <- avg + (1 - decay)(z - avg).
  double step = 1.0 - ema_decay_;
  if (kind_ == AveragingKind::kUniform) step = 1.0 / static_cast<double>(count_);
  if (kind_ == AveragingKind::kWeighted) step = total_weight_ > 0 ? weight / total_weight_ : 0.0;
  average_.lerp_(z.detach(), step);
}

void IterateAverage::restore(torch::Tensor average, int64_t count, double total_weight) {
  average_ = std::move(average);
  count_ = count;
  total_weight_ = total_weight;
}

}  // namespace saddle
