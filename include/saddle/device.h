// Devices: where a run's tensors live. Every stage of game -> exchange -> solver -> metrics keeps
// its tensors on the run's device: the game's parameters and operator, the exchange's messages
// (encoded and decoded by CUDA kernels on a GPU, sent over NCCL or host-staged MPI) and the
// solver's state. Random draws stay on the CPU (the sample streams are CPU generators), so a run
// draws the same samples on any device, and checkpoints hold CPU tensors.
#pragma once

#include <torch/types.h>

#include <string>

namespace saddle {

// Whether this build of saddle has its CUDA kernels (built against a LibTorch with CUDA).
bool cuda_built();
// CUDA devices this process sees (0 without CUDA support, driver or device).
int cuda_device_count();

// The device of a rank. `spec` is "auto" (CUDA when available, else the CPU), "cpu", "cuda" (the
// node-local rank modulo the visible devices, so N ranks on a node with N GPUs take one each) or
// "cuda:N". `cuda_devices` is what cuda_device_count() returns (0 when this build or machine has
// no CUDA); passing it makes the choice testable anywhere. Throws saddle::Error naming --device.
torch::Device resolve_device(const std::string& spec, int local_rank, int cuda_devices);

// A CPU tensor on `device`, for the draws uploaded every iteration. On a GPU it goes through
// pinned memory as an asynchronous copy: a copy from pageable memory would first wait for every
// kernel queued on the device, so the CPU could not queue the next ones while the GPU works.
// LibTorch's pinned allocator keeps the staging buffer until the copy is done.
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

// Waits for the work queued on `device` (a no-op on the CPU): timings of GPU work need it.
void synchronize(const torch::Device& device);

// "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string describe_device(const torch::Device& device);

// Bytes free for new allocations on `device` (the CPU: MemAvailable of /proc/meminfo; a GPU: free
// device memory), or -1 when unknown.
int64_t available_memory(const torch::Device& device);
// Throws saddle::Error("WHAT needs N bytes, more than the M available on DEVICE") when `bytes`
// cannot fit: a clear line before an allocation would fail deep inside LibTorch.
void check_memory(double bytes, const torch::Device& device, const std::string& what);

}  // namespace saddle
