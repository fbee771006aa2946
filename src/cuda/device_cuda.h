// CUDA facts for saddle/device.h (CUDA builds only).
#pragma once

#include <cstdint>
#include <string>

namespace saddle::cuda_detail {

// The device's product name, e.g. "NVIDIA H100 80GB HBM3".
std::string device_name(int index);
// The device's PCI bus id ("0000:3B:00.0", as NVML wants it), or "" when unknown.
std::string pci_bus_id(int index);
// Free memory on the device in bytes, or -1 when it cannot be read.
int64_t free_memory(int index);

}  // namespace saddle::cuda_detail
