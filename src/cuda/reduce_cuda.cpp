#include "reduce_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../detail/reduce.h"
#include "reduce_kernels.h"
#include "saddle/error.h"

namespace saddle::cuda_detail {

double fixed_order_sum_squares(const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& w) {
  c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = a.numel();
  const int64_t count = (n + detail::kReduceChunk - 1) / detail::kReduceChunk;
  if (count == 0) return 0.0;
  torch::Tensor chunks =
      torch::empty({count}, torch::TensorOptions().dtype(torch::kFloat64).device(a.device()));
  cuda_kernels::chunk_sums_of_squares(
      a.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr,
      w.defined() ? w.data_ptr<float>() : nullptr, n, chunks.data_ptr<double>(),
      at::cuda::getCurrentCUDAStream().stream());
  SADDLE_CHECK(cudaGetLastError() == cudaSuccess, "CUDA reduction failed to launch");
  const torch::Tensor host = chunks.to(torch::kCPU);
  const double* c = host.data_ptr<double>();
  double total = 0.0;
  for (int64_t k = 0; k < count; ++k) total += c[k];  // in index order, as on the CPU
  return total;
}

}  // namespace saddle::cuda_detail
