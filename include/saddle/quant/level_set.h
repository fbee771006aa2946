// Level sets: the magnitudes in [0, 1] to which the exchange's stochastic quantizers round each
// normalized coordinate r = |v_i| / ||bucket|| (part of the "exchange" stage of game -> exchange ->
// solver -> metrics). Fixed sets are QSGD's uniform levels and NUQSGD's exponential levels; the
// adaptive ones (ALQ, AMQ) are refitted from magnitude statistics so as to minimize the expected
// quantization variance
//     E||Q(v) - v||^2 = sum_i ||bucket(i)||^2 (l_{j+1} - r_i)(r_i - l_j),   l_j <= r_i <= l_{j+1}.
// A set with b bits per coordinate holds 2^(b-1) levels (the sign takes the remaining bit),
// sorted, strictly increasing, with 0 and 1 included.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace saddle {

int level_count(int bits);  // 2^(bits-1)

std::vector<float> uniform_levels(int count);  // {0, 1/s, ..., 1}, s = count-1
std::vector<float> exponential_levels(int count, double multiplier);  // {0, p^(count-2), ..., p, 1}

// Throws saddle::Error unless `levels` is a valid set of `count` levels.
void check_levels(const std::vector<float>& levels, int count);

// 32-bit FNV-1a over the levels' bit patterns; travels in every message so that a decoder holding
// other levels than the encoder rejects the message instead of silently mis-decoding it.
uint32_t levels_hash(const std::vector<float>& levels);

// Magnitude statistics: a kFloat64 tensor of shape [3, kLevelStatBins]. Bin k collects the
// coordinates whose normalized magnitude r has floor(sqrt(r) * kLevelStatBins) == k, each weighted
// by its bucket's squared norm (so that variances come out in units of ||Q(v) - v||^2):
// row 0 holds sum w, row 1 sum w r, row 2 sum w r^2. The sqrt spacing resolves small magnitudes,
// where most coordinates of a long L2-normalized bucket live. Every entry is a sum, so statistics
// of several vectors or ranks combine by addition (what the exchange does before adapt()).
constexpr int64_t kLevelStatBins = 2048;
int64_t level_stat_bin(float r);
void check_level_statistics(
    const torch::Tensor& stats);  // shape, dtype, finite, non-negative weights

// The expected quantization variance of `levels` on the data summarized by `stats`. Exact when no
// level falls strictly inside a bin's range of magnitudes; otherwise the bin counts at its mean.
double expected_variance(const std::vector<float>& levels, const torch::Tensor& stats);

// ALQ (Faghri et al., NeurIPS 2020): coordinate descent over the interior levels, each update the
// exact minimizer of the variance between its two neighbours. Descends from the best of
// `initial`, uniform and exponential levels, and again from AMQ's fitted levels, keeping the
// lower; so the result never predicts more variance than QSGD's, NUQSGD's or AMQ's levels.
std::vector<float> fit_alq_levels(const std::vector<float>& initial, const torch::Tensor& stats);

// AMQ: exponential levels p^(count-1-j) with the multiplier p chosen by a grid search followed by a
// golden-section refinement (the objective is smooth in p but not always unimodal). Returns the
// levels and sets *multiplier to p when given.
std::vector<float> fit_amq_levels(int count, const torch::Tensor& stats,
                                  double* multiplier = nullptr);

}  // namespace saddle
