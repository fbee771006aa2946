// One block per chunk, thread l is lane l: the lane sums in index order, then the pairwise tree,
// in double, exactly as detail::fixed_order_sum_squares on the CPU.
#include <cuda_runtime.h>

#include "cuda/reduce_kernels.h"
#include "detail/reduce_order.h"

namespace saddle::cuda_kernels {

namespace {

using detail::kReduceChunk;
using detail::kReduceLanes;

__global__ void __launch_bounds__(kReduceLanes)
    chunk_kernel(const float* __restrict__ a, const float* __restrict__ b,
                 const float* __restrict__ w, int64_t n, double* __restrict__ chunks) {
  __shared__ double lanes[kReduceLanes];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kReduceChunk;
  const int64_t m = n - first < kReduceChunk ? n - first : kReduceChunk;
  const int l = threadIdx.x;
  double acc = 0.0;
  for (int64_t i = l; i < m; i += kReduceLanes) {
    const double d = b != nullptr
                         ? static_cast<double>(a[first + i]) - static_cast<double>(b[first + i])
                         : static_cast<double>(a[first + i]);
    const double term = w != nullptr ? static_cast<double>(w[first + i]) * (d * d) : d * d;
    acc = acc + term;
  }
  lanes[l] = acc;
  __syncthreads();
  for (int h = kReduceLanes / 2; h >= 1; h /= 2) {
    if (l < h) lanes[l] = lanes[l] + lanes[l + h];
    __syncthreads();
  }
  if (l == 0) chunks[blockIdx.x] = lanes[0];
}

}  // namespace

void chunk_sums_of_squares(const float* a, const float* b, const float* w, int64_t n,
                           double* chunks, cudaStream_t stream) {
  const int64_t count = (n + kReduceChunk - 1) / kReduceChunk;
  if (count == 0) return;
  chunk_kernel<<<static_cast<unsigned>(count), kReduceLanes, 0, stream>>>(a, b, w, n, chunks);
}

}  // namespace saddle::cuda_kernels
