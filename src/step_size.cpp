#include "saddle/step_size.h"

#include <cmath>

#include "saddle/error.h"

namespace saddle {

StepSizeKind parse_step_size(const std::string& name) {
  if (name == "constant") return StepSizeKind::kConstant;
  if (name == "adaptive") return StepSizeKind::kAdaptive;
  throw Error("unknown step size '" + name + "' (expected constant or adaptive)");
}

const char* step_size_name(StepSizeKind kind) {
  return kind == StepSizeKind::kConstant ? "constant" : "adaptive";
}

double AdaptiveStepSize::scale() const { return 1.0 / std::sqrt(1.0 + sum_); }

void AdaptiveStepSize::observe(double sq_difference) {
  // A non-finite difference means the run diverged; the runner reports it with its iteration.
  if (std::isfinite(sq_difference)) sum_ += sq_difference;
}

std::unique_ptr<StepSize> make_step_size(StepSizeKind kind) {
  if (kind == StepSizeKind::kAdaptive) return std::make_unique<AdaptiveStepSize>();
  return std::make_unique<ConstantStepSize>();
}

}  // namespace saddle
