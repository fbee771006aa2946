// The arithmetic of one bucket of the stochastic quantizers, shared by the CPU kernels
// (kernels.cpp) and the CUDA kernels (src/cuda/codec_kernels.cu): the bucket norm's summation
// order, the per-bucket scale and the rounding of one coordinate. Both encoders follow it
// operation for operation, in IEEE single or double precision without FMA contraction (g++ in ISO
// mode, nvcc with --fmad=false), so they write the same bytes for the same input and seed, and
// ranks on CPUs and GPUs can be mixed in one run.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../detail/hash.h"

namespace saddle {
namespace quant_detail {

// The L2 norm's summation order: lane l in [0, kNormLanes) adds v[l]^2, v[l + kNormLanes]^2, ...
// in index order (float), then the lanes are added pairwise, lane l += lane l + h for
// h = kNormLanes / 2, ..., 1 (one GPU block of kNormLanes threads sums a bucket exactly this
// way). When that float sum lies outside [kNormSafeMin, kNormSafeMax] (squares that overflow or
// underflow) the same order is redone in double. norm = float(sqrt(double(sum))).
constexpr int kNormLanes = 256;
constexpr double kNormSafeMin = 1e-30;
constexpr double kNormSafeMax = 1e37;

SADDLE_HOST_DEVICE inline bool sum_in_safe_range(double sum) {
  return sum >= kNormSafeMin && sum <= kNormSafeMax;
}

// True for finite x (x - x is 0 exactly then, NaN otherwise); needs no <cmath> on the device.
SADDLE_HOST_DEVICE inline bool finite(double x) { return x - x == 0.0; }

// The per-bucket multiplier: s / norm (uniform levels, s = count - 1) or 1 / norm (any levels),
// computed in double. A subnormal norm makes the float multiplier overflow; such buckets keep the
// double one (wide).
struct BucketScale {
  bool wide = false;
  float narrow = 0;
  double precise = 0;
};

SADDLE_HOST_DEVICE inline BucketScale scale_for(float norm, bool uniform, int count) {
  BucketScale sc;
  sc.precise = norm > 0 ? (uniform ? count - 1 : 1) / static_cast<double>(norm) : 0.0;
  sc.narrow = static_cast<float>(sc.precise);
  sc.wide = !finite(sc.narrow);
  return sc;
}

SADDLE_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

SADDLE_HOST_DEVICE inline float magnitude(float x) {
#if defined(__CUDA_ARCH__)
  return fabsf(x);
#else
  return __builtin_fabsf(x);
#endif
}

// Symbol: the level index, and the sign in the top bit of `bits` when the index is not 0.
SADDLE_HOST_DEVICE inline uint8_t make_symbol(int idx, uint32_t value_bits, int bits) {
  const uint32_t sign = (value_bits >> 31) & static_cast<uint32_t>(idx != 0);
  return static_cast<uint8_t>(static_cast<uint32_t>(idx) | (sign << (bits - 1)));
}

// Uniform levels j / s: a = |x| * s / norm, index floor(a) (at most s - 1), rounded up when the
// uniform u falls below the fraction.
template <typename Scale>
SADDLE_HOST_DEVICE inline int uniform_index(float x, Scale mul, int s, float u) {
  const float a = static_cast<float>(magnitude(x) * mul);
  int floor_index = static_cast<int>(a);
  floor_index = floor_index < s - 1 ? floor_index : s - 1;
  const float frac = a - static_cast<float>(floor_index);
  return floor_index + (u < frac);
}
template <typename Scale>
SADDLE_HOST_DEVICE inline uint8_t quantize_uniform_one(float x, Scale mul, int s, int bits,
                                                       float u) {
  return make_symbol(uniform_index(x, mul, s, u), float_bits(x), bits);
}

// The largest j <= count - 2 with levels[j] <= r (levels strictly increasing, levels[0] = 0).
SADDLE_HOST_DEVICE inline int level_bracket(const float* levels, int count, float r) {
  int lo = 0, hi = count - 2;  // levels[lo] <= r; the answer is in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (levels[mid] <= r) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Any levels: r = min(1, |x| / norm) lies in [l_j, l_{j+1}]; round up with probability
// (r - l_j) / (l_{j+1} - l_j), the fraction computed as (r - l_j) * inv_gap_j. In three steps, so
// that a kernel may find the bracket j its own way (the CUDA encoder: a fixed number of halvings).
template <typename Scale>
SADDLE_HOST_DEVICE inline float level_ratio(float x, Scale inv_norm) {
  const float a = static_cast<float>(magnitude(x) * inv_norm);
  return 1.0f < a ? 1.0f : a;
}
SADDLE_HOST_DEVICE inline int rounded_level(float r, int j, const float* levels,
                                            const float* inv_gap, float u) {
  const float frac = (r - levels[j]) * inv_gap[j];
  return j + (u < frac);
}
SADDLE_HOST_DEVICE inline uint8_t round_to_levels(float x, float r, int j, const float* levels,
                                                  const float* inv_gap, int bits, float u) {
  return make_symbol(rounded_level(r, j, levels, inv_gap, u), float_bits(x), bits);
}
template <typename Scale>
SADDLE_HOST_DEVICE inline uint8_t quantize_levels_one(float x, Scale inv_norm, const float* levels,
                                                      const float* inv_gap, int count, int bits,
                                                      float u) {
  const float r = level_ratio(x, inv_norm);
  return round_to_levels(x, r, level_bracket(levels, count, r), levels, inv_gap, bits, u);
}

// The CUDA register encoder's forms of the above, branch-free on a GPU; tests/unit/test_quant.cpp
// checks them against level_bracket and make_symbol.
//
// Level sets of at most 8 levels (4-bit ALQ, NUQ, AMQ and fewer bits): levels 1 .. 6 held by
// value (+inf past count - 2), and level_bracket's j (the largest j <= count - 2 with
// levels[j] <= r) in the three halvings 4, 2, 1, each picking the level it compares by select
// rather than by index. The padded levels only grow, so this is the same search (NaN gives 0, as
// there).
struct FewLevels {
  static constexpr int kMaxCount = 8;
  float l1, l2, l3, l4, l5, l6;

  SADDLE_HOST_DEVICE FewLevels(const float* levels, int count) {
    const float inf = std::numeric_limits<float>::infinity();
    l1 = 1 <= count - 2 ? levels[1] : inf;
    l2 = 2 <= count - 2 ? levels[2] : inf;
    l3 = 3 <= count - 2 ? levels[3] : inf;
    l4 = 4 <= count - 2 ? levels[4] : inf;
    l5 = 5 <= count - 2 ? levels[5] : inf;
    l6 = 6 <= count - 2 ? levels[6] : inf;
  }
  SADDLE_HOST_DEVICE int bracket(float r) const {
    const bool p4 = l4 <= r;
    const bool p2 = (p4 ? l6 : l2) <= r;
    const float odd_low = p4 ? l5 : l1;  // levels[j + 1] for j = 4p4 + 2p2
    const float odd_high = p4 ? std::numeric_limits<float>::infinity() : l3;
    const float next = p2 ? odd_high : odd_low;
    return (p4 ? 4 : 0) + (p2 ? 2 : 0) + (next <= r ? 1 : 0);
  }
};

// make_symbol(idx, float_bits(x), bits), given sign_bit = 1 << (bits - 1).
SADDLE_HOST_DEVICE inline unsigned int symbol_of(int idx, float x, unsigned int sign_bit) {
  return static_cast<unsigned int>(idx) | (idx != 0 && (float_bits(x) >> 31) != 0 ? sign_bit : 0u);
}

}  // namespace quant_detail
}  // namespace saddle
