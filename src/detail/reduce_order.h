// The fixed summation order of detail::fixed_order_sum_squares (reduce.h), shared with its CUDA
// kernel: chunks of kReduceChunk coordinates, kReduceLanes strided lanes and a pairwise tree each.
#pragma once

#include <cstdint>

namespace saddle::detail {

constexpr int64_t kReduceChunk = 4096;
constexpr int kReduceLanes = 256;

}  // namespace saddle::detail
