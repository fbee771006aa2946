// Per-chunk sums of squares for cuda_detail::fixed_order_sum_squares (plain pointers, nvcc only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace saddle::cuda_kernels {

// chunks[c] = sum over chunk c (kReduceChunk coordinates) of w_i (a_i - b_i)^2 in the fixed order;
// b and w may be null.
void chunk_sums_of_squares(const float* a, const float* b, const float* w, int64_t n,
                           double* chunks, cudaStream_t stream);

}  // namespace saddle::cuda_kernels
