#include "reduce.h"

#include <algorithm>
#include <vector>

#include "saddle/error.h"

#if SADDLE_WITH_CUDA
#include "../cuda/reduce_cuda.h"
#endif

namespace saddle::detail {

namespace {

template <typename T>
double chunk_sum(const T* a, const T* b, const T* w, int64_t n) {
  double lanes[kReduceLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    const double d = b != nullptr ? static_cast<double>(a[i]) - static_cast<double>(b[i])
                                  : static_cast<double>(a[i]);
    const double term = w != nullptr ? static_cast<double>(w[i]) * (d * d) : d * d;
    lanes[i % kReduceLanes] += term;
  }
  for (int h = kReduceLanes / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lanes[l] += lanes[l + h];
  return lanes[0];
}

template <typename T>
double cpu_sum(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& w) {
  const T* pa = a.data_ptr<T>();
  const T* pb = b.defined() ? b.data_ptr<T>() : nullptr;
  const T* pw = w.defined() ? w.data_ptr<T>() : nullptr;
  const int64_t n = a.numel();
  double total = 0.0;
  for (int64_t first = 0; first < n; first += kReduceChunk) {
    const int64_t m = std::min(kReduceChunk, n - first);
    total += chunk_sum<T>(pa + first, pb ? pb + first : nullptr, pw ? pw + first : nullptr, m);
  }
  return total;
}

}  // namespace

double fixed_order_sum_squares(const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& w) {
  SADDLE_CHECK(a.defined() && a.dim() == 1, "fixed_order_sum_squares: expected a 1-D tensor");
  for (const torch::Tensor* t : {&b, &w}) {
    SADDLE_CHECK(
        !t->defined() || (t->dim() == 1 && t->numel() == a.numel() && t->device() == a.device() &&
                          t->scalar_type() == a.scalar_type()),
        "fixed_order_sum_squares: operands differ in shape, device or dtype");
  }
  const torch::Tensor ac = a.contiguous();
  const torch::Tensor bc = b.defined() ? b.contiguous() : b;
  const torch::Tensor wc = w.defined() ? w.contiguous() : w;
#if SADDLE_WITH_CUDA
  if (ac.is_cuda() && ac.scalar_type() == torch::kFloat32) {
    return cuda_detail::fixed_order_sum_squares(ac, bc, wc);
  }
#endif
  if (!ac.device().is_cpu()) {
    return fixed_order_sum_squares(ac.cpu(), bc.defined() ? bc.cpu() : bc,
                                   wc.defined() ? wc.cpu() : wc);
  }
  if (ac.scalar_type() == torch::kFloat64) return cpu_sum<double>(ac, bc, wc);
  SADDLE_CHECK(ac.scalar_type() == torch::kFloat32, "fixed_order_sum_squares: dtype ",
               ac.scalar_type(), " (expected float32 or float64)");
  return cpu_sum<float>(ac, bc, wc);
}

}  // namespace saddle::detail
