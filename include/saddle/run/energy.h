// Energy counters for the ledger (stage 4 of game -> exchange -> solver -> metrics): saddle exists
// to spend less energy per result, so a run reports the joules it used. On a GPU the board's
// cumulative energy counter is read through NVML (libnvidia-ml, loaded at run time, so that
// machines without it still run); on a CPU the package counters of RAPL under
// /sys/class/powercap, where they are readable. Where no counter works, the reason is kept and
// summary.json says so plainly.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <memory>
#include <string>

namespace saddle {

struct EnergyOptions {
  // Where the kernel exposes RAPL (tests point this at a directory of their own).
  TORCH_ARG(std::string, powercap_root) = "/sys/class/powercap";
  TORCH_ARG(std::string, nvml_library) = "libnvidia-ml.so.1";
};

class EnergyMeter {
 public:
  virtual ~EnergyMeter() = default;
  // "nvml cuda:0 (NVIDIA H100 80GB HBM3)" or "rapl intel-rapl:0 + intel-rapl:1".
  virtual std::string source() const = 0;
  // Joules since the meter was opened (counter wrap-arounds accounted for).
  virtual double joules() = 0;
};

struct EnergyProbe {
  std::unique_ptr<EnergyMeter> meter;  // null when no counter can be read
  std::string unavailable;             // why, when meter is null
};

// NVML for a CUDA device, RAPL for the CPU.
EnergyProbe open_energy_meter(const torch::Device& device,
                              const EnergyOptions& options = EnergyOptions());

}  // namespace saddle
