#include "device_cuda.h"

#include <cuda_runtime_api.h>

namespace saddle::cuda_detail {

std::string device_name(int index) {
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) return "unknown CUDA device";
  return properties.name;
}

std::string pci_bus_id(int index) {
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, index) != cudaSuccess) return "";
  return bus;
}

}  // namespace saddle::cuda_detail
