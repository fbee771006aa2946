// StepSize: how large a step the solver takes at iteration t (stage 3 of game -> exchange ->
// solver -> metrics). A solver's step is lr_player * scale(), where scale() is 1 for the constant
// rule and, for the Q-GenX adaptive rule,
//     scale_t = 1 / sqrt(1 + sum_{s<t} ||V_{s+1/2} - Vhat_s||^2).
// The solver reports ||V_{t+1/2} - Vhat_t||^2 through observe(); it is computed from exchanged
// (averaged) operators only, so every rank of a distributed run holds the same step size.
#pragma once

#include <memory>
#include <string>

namespace saddle {

enum class StepSizeKind { kConstant, kAdaptive };

StepSizeKind parse_step_size(const std::string& name);  // "constant" | "adaptive"
const char* step_size_name(StepSizeKind kind);

class StepSize {
 public:
  virtual ~StepSize() = default;
  virtual double scale() const = 0;
  virtual void observe(double sq_difference) = 0;
  virtual StepSizeKind kind() const = 0;
  // Accumulated state, for checkpoints.
  virtual double state() const { return 0.0; }
  virtual void set_state(double) {}
};

class ConstantStepSize final : public StepSize {
 public:
  double scale() const override { return 1.0; }
  void observe(double) override {}
  StepSizeKind kind() const override { return StepSizeKind::kConstant; }
};

class AdaptiveStepSize final : public StepSize {
 public:
  double scale() const override;
  void observe(double sq_difference) override;
  StepSizeKind kind() const override { return StepSizeKind::kAdaptive; }
  double state() const override { return sum_; }
  void set_state(double sum) override { sum_ = sum; }

 private:
  double sum_ = 0.0;
};

std::unique_ptr<StepSize> make_step_size(StepSizeKind kind);

}  // namespace saddle
