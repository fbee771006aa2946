// Arithmetic precision of the games' forward and backward passes (stage 1 of game -> exchange ->
// solver -> metrics): fp32, or bf16 / fp16 under LibTorch's autocast (mixed precision: matrix
// products and convolutions in 16 bits, reductions and the parameters in 32), the operator itself
// always float32 for the exchange. This is the low-precision arithmetic that saves time and
// energy on accelerators. fp16 needs CUDA and loss scaling (LossScaler); bf16 runs on CUDA and on
// the CPU.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace saddle {

enum class Precision { kFp32, kBf16, kFp16 };
Precision parse_precision(const std::string& name);  // "fp32" | "bf16" | "fp16"
const char* precision_name(Precision precision);
// Throws saddle::Error naming --precision when `precision` cannot run on `device`.
void check_precision(Precision precision, const torch::Device& device);

// Autocast on `device`'s type with the precision's dtype for the scope's lifetime (nothing for
// fp32); restores the previous state, so scopes nest.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType type_ = torch::kCPU;
  bool was_enabled_ = false;
  torch::ScalarType was_dtype_ = torch::kFloat32;
};

// Dynamic loss scaling for fp16: a game multiplies its losses by scale() before differentiating
// and divides the gradients by it, so that small gradients do not underflow fp16. An evaluation
// whose operator is not finite halves the scale (the caller evaluates the same sample again); after
// `growth_interval` finite ones in a row the scale doubles, up to 2^24.
class LossScaler {
 public:
  explicit LossScaler(double initial = 65536.0, int64_t growth_interval = 2000);
  double scale() const { return scale_; }
  // Records an evaluation; returns false when it overflowed (retry with the new, smaller scale).
  bool update(bool finite);
  // Overflows in a row (more than ~30 means the values themselves are not finite).
  int64_t overflows_in_a_row() const { return overflows_; }

 private:
  double scale_;
  int64_t growth_interval_;
  int64_t good_ = 0;
  int64_t overflows_ = 0;
};

}  // namespace saddle
