// Sums of squares in double, in one fixed order whatever the thread count or the device: chunks of
// kReduceChunk coordinates, each summed by kReduceLanes strided lanes and a pairwise tree over
// the lanes, then the chunks' sums in index order. Every rank holds the same averaged operators and
// iterates, so every rank computes the same bits from them, CPU and GPU ranks alike, and the step
// sizes derived from these sums agree everywhere. (LibTorch's sum() splits the work by the
// intra-op thread count, so its rounding depends on the thread count.)
#pragma once

#include <torch/types.h>

#include "reduce_order.h"

namespace saddle::detail {

// sum_i w_i (a_i - b_i)^2, with b and w optional (undefined tensors): ||a||^2, ||a - b||^2, and
// the weighted forms. 1-D tensors of one length and device; float32 or float64.
double fixed_order_sum_squares(const torch::Tensor& a, const torch::Tensor& b = {},
                               const torch::Tensor& w = {});

}  // namespace saddle::detail
