#include "saddle/device.h"

#include <fmt/format.h>
#include <torch/cuda.h>

#include "saddle/error.h"
#include "saddle/run/files.h"

#if SADDLE_WITH_CUDA
#include "cuda/device_cuda.h"
#endif

namespace saddle {

bool cuda_built() { return SADDLE_WITH_CUDA != 0; }

int cuda_device_count() {
#if SADDLE_WITH_CUDA
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
#else
  return 0;
#endif
}

torch::Device resolve_device(const std::string& spec, int local_rank, int cuda_devices) {
  SADDLE_CHECK(local_rank >= 0, "resolve_device: invalid local rank ", local_rank);
  const std::string why_none =
      cuda_built() ? "no CUDA device is visible to this process"
                   : "this build of saddle has no CUDA support (build it against the CUDA "
                     "LibTorch: bash scripts/setup.sh --torch pip)";
  if (spec == "auto") {
    return cuda_devices > 0
               ? torch::Device(torch::kCUDA, static_cast<int8_t>(local_rank % cuda_devices))
               : torch::Device(torch::kCPU);
  }
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec == "cuda") {
    SADDLE_CHECK(cuda_devices > 0, "--device cuda: ", why_none);
    return torch::Device(torch::kCUDA, static_cast<int8_t>(local_rank % cuda_devices));
  }
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string digits = spec.substr(5);
    SADDLE_CHECK(!digits.empty() && digits.size() <= 3 &&
                     digits.find_first_not_of("0123456789") == std::string::npos,
                 "invalid --device '", spec, "' (expected auto, cpu, cuda or cuda:N)");
    const int index = std::stoi(digits);
    SADDLE_CHECK(cuda_devices > 0, "--device ", spec, ": ", why_none);
    SADDLE_CHECK(index < cuda_devices, "--device ", spec, ": only ", cuda_devices,
                 " CUDA device(s) are visible (cuda:0..cuda:", cuda_devices - 1, ")");
    return torch::Device(torch::kCUDA, static_cast<int8_t>(index));
  }
  throw Error("invalid --device '" + spec + "' (expected auto, cpu, cuda or cuda:N)");
}

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
#if SADDLE_WITH_CUDA
  if (device.is_cuda() && host.is_cpu()) return host.pin_memory().to(device, /*non_blocking=*/true);
#endif
  return host.to(device);
}

void synchronize(const torch::Device& device) {
#if SADDLE_WITH_CUDA
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
#endif
}

int64_t available_memory(const torch::Device& device) {
#if SADDLE_WITH_CUDA
  if (device.is_cuda()) return cuda_detail::free_memory(device.index());
#endif
  if (!device.is_cpu()) return -1;
  try {
    const std::string text = read_file_prefix("/proc/meminfo", 1 << 14);
    const size_t at = text.find("MemAvailable:");
    if (at == std::string::npos) return -1;
    return std::stoll(text.substr(at + 13)) * 1024;  // the file counts kB
  } catch (const std::exception&) {
    return -1;
  }
}

void check_memory(double bytes, const torch::Device& device, const std::string& what) {
  const int64_t available = available_memory(device);
  if (available < 0 || bytes <= static_cast<double>(available)) return;
  throw Error(fmt::format("{} needs {:.3g} bytes, more than the {:.1f} GiB available on {}", what,
                          bytes, static_cast<double>(available) / (1 << 30), device.str()));
}

std::string describe_device(const torch::Device& device) {
#if SADDLE_WITH_CUDA
  if (device.is_cuda()) return device.str() + " (" + cuda_detail::device_name(device.index()) + ")";
#endif
  return device.str();
}

}  // namespace saddle
