#include "device_cuda.h"

#include <cuda_runtime_api.h>

namespace saddle::cuda_detail {

std::string device_name(int index) {
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) return "unknown CUDA device";
  return properties.name;
}

int64_t free_memory(int index) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(index) != cudaSuccess) return -1;
  size_t free = 0, total = 0;
  const bool ok = cudaMemGetInfo(&free, &total) == cudaSuccess;
  cudaSetDevice(previous);
  return ok ? static_cast<int64_t>(free) : -1;
}

std::string pci_bus_id(int index) {
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, index) != cudaSuccess) return "";
  return bus;
}

}  // namespace saddle::cuda_detail
