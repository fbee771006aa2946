#include "saddle/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>

#include "saddle/error.h"

namespace saddle {

namespace {

torch::ScalarType dtype_of(Precision precision) {
  return precision == Precision::kFp16 ? torch::kHalf : torch::kBFloat16;
}

// LibTorch 2.x keys autocast by device type; 1.13 has one switch for CUDA and one for the CPU.
bool autocast_enabled(torch::DeviceType type) {
#if TORCH_VERSION_MAJOR >= 2
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

torch::ScalarType autocast_dtype(torch::DeviceType type) {
#if TORCH_VERSION_MAJOR >= 2
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                              : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast(torch::DeviceType type, bool enabled, torch::ScalarType dtype) {
#if TORCH_VERSION_MAJOR >= 2
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  throw Error("invalid --precision '" + name + "' (expected fp32, bf16 or fp16)");
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
  }
  return "fp32";
}

void check_precision(Precision precision, const torch::Device& device) {
  SADDLE_CHECK(device.is_cpu() || device.is_cuda(), "--precision: unsupported device ",
               device.str());
  SADDLE_CHECK(precision != Precision::kFp16 || device.is_cuda(),
               "--precision fp16 needs a CUDA device (LibTorch's CPU autocast runs bf16; use "
               "--precision bf16 on the CPU)");
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device)
    : active_(precision != Precision::kFp32), type_(device.type()) {
  if (!active_) return;
  check_precision(precision, device);
  was_enabled_ = autocast_enabled(type_);
  was_dtype_ = autocast_dtype(type_);
  set_autocast(type_, true, dtype_of(precision));
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // As Python's torch.autocast: the cast cache lives until the outermost scope ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(type_, was_enabled_, was_dtype_);
}

LossScaler::LossScaler(double initial, int64_t growth_interval)
    : scale_(initial), growth_interval_(growth_interval) {
  SADDLE_CHECK(initial >= 1.0, "LossScaler: initial scale must be >= 1, got ", initial);
  SADDLE_CHECK(growth_interval >= 1, "LossScaler: growth interval must be >= 1, got ",
               growth_interval);
}

bool LossScaler::update(bool finite) {
  if (!finite) {
    ++overflows_;
    good_ = 0;
    scale_ = std::max(1.0, scale_ / 2.0);
    return false;
  }
  overflows_ = 0;
  if (++good_ >= growth_interval_) {
    good_ = 0;
    scale_ = std::min(scale_ * 2.0, 16777216.0);
  }
  return true;
}

}  // namespace saddle
