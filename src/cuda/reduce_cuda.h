// The device twin of detail::fixed_order_sum_squares (src/detail/reduce.h): the chunks' sums are
// computed by one block each in the same lane-and-tree order, and added on the host in index order,
// so a GPU rank gets the CPU's bits.
#pragma once

#include <torch/types.h>

namespace saddle::cuda_detail {

double fixed_order_sum_squares(const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& w);

}  // namespace saddle::cuda_detail
