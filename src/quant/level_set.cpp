#include "saddle/quant/level_set.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "../detail/hash.h"
#include "saddle/error.h"

namespace saddle {
namespace {

// One bin of the statistics seen as a weighted point at its mean magnitude.
struct Point {
  double w, s1, s2, m;
};

std::vector<Point> points_of(const torch::Tensor& stats) {
  check_level_statistics(stats);
  auto s = stats.contiguous();
  const double* w = s.data_ptr<double>();
  const double* s1 = w + kLevelStatBins;
  const double* s2 = s1 + kLevelStatBins;
  std::vector<Point> points;
  for (int64_t k = 0; k < kLevelStatBins; ++k) {
    if (w[k] > 0)
      points.push_back({w[k], s1[k], s2[k], std::min(1.0, std::max(0.0, s1[k] / w[k]))});
  }
  // Bins are ordered by magnitude and each mean lies inside its bin, but sort anyway: a sum of
  // statistics from ranks with rounding differences must not break the scans below.
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.m < b.m; });
  return points;
}

// Variance of the points between levels a <= m <= b: sum w (b - r)(r - a) = -s2 + s1 (a + b) - w a
// b.
double interval_variance(const Point& p, double a, double b) {
  return std::max(0.0, -p.s2 + p.s1 * (a + b) - p.w * a * b);
}

template <typename Levels>
double variance_of(const Levels& levels, const std::vector<Point>& points) {
  const int64_t count = static_cast<int64_t>(levels.size());
  double total = 0;
  for (const Point& p : points) {
    int64_t j = std::upper_bound(levels.begin(), levels.end(), p.m) - levels.begin() - 1;
    j = std::min<int64_t>(std::max<int64_t>(j, 0), count - 2);
    total += interval_variance(p, levels[j], levels[j + 1]);
  }
  return total;
}

// Double-precision levels rounded to floats; rounding may merge two very close levels, which the
// quantizer cannot accept (zero gap), so nudge them apart.
std::vector<float> to_float_levels(const std::vector<double>& levels) {
  std::vector<float> out(levels.begin(), levels.end());
  out.front() = 0.0f;
  out.back() = 1.0f;
  for (size_t j = 1; j + 1 < out.size(); ++j) {
    if (out[j] <= out[j - 1]) out[j] = std::nextafter(out[j - 1], 2.0f);
  }
  for (size_t j = out.size() - 1; j-- > 1;) {
    if (out[j] >= out[j + 1]) out[j] = std::nextafter(out[j + 1], -1.0f);
  }
  return out;
}

}  // namespace

int level_count(int bits) { return 1 << (bits - 1); }

std::vector<float> uniform_levels(int count) {
  SADDLE_CHECK(count >= 2, "a level set needs at least 2 levels, got ", count);
  std::vector<float> levels(count);
  for (int j = 0; j < count; ++j)
    levels[j] = static_cast<float>(static_cast<double>(j) / (count - 1));
  return levels;
}

std::vector<float> exponential_levels(int count, double multiplier) {
  SADDLE_CHECK(count >= 2, "a level set needs at least 2 levels, got ", count);
  SADDLE_CHECK(multiplier > 0 && multiplier < 1,
               "exponential level multiplier must be in (0, 1), got ", multiplier);
  std::vector<float> levels(count);
  levels[0] = 0.0f;
  for (int j = 1; j < count; ++j)
    levels[j] = static_cast<float>(std::pow(multiplier, count - 1 - j));
  check_levels(levels, count);
  return levels;
}

void check_levels(const std::vector<float>& levels, int count) {
  SADDLE_CHECK(static_cast<int>(levels.size()) == count, "level set has ", levels.size(),
               " levels (expected ", count, ")");
  SADDLE_CHECK(levels.front() == 0.0f && levels.back() == 1.0f,
               "level set must start at 0 and end at 1, got ", levels.front(), " .. ",
               levels.back());
  for (size_t j = 1; j < levels.size(); ++j) {
    SADDLE_CHECK(std::isfinite(levels[j]) && levels[j] > levels[j - 1],
                 "level set must be strictly increasing: level ", j, " = ", levels[j], " after ",
                 levels[j - 1]);
  }
}

uint32_t levels_hash(const std::vector<float>& levels) {
  // The count, then every level's bit pattern, as little-endian 32-bit words.
  const auto count = static_cast<uint32_t>(levels.size());
  uint32_t h = detail::fnv1a32(&count, sizeof count);
  return levels.empty() ? h : detail::fnv1a32(levels.data(), levels.size() * sizeof(float), h);
}

int64_t level_stat_bin(float r) {
  const double x = std::sqrt(std::min(1.0, std::max(0.0, static_cast<double>(r))));
  return std::min<int64_t>(kLevelStatBins - 1, static_cast<int64_t>(x * kLevelStatBins));
}

void check_level_statistics(const torch::Tensor& stats) {
  SADDLE_CHECK(stats.defined() && stats.scalar_type() == torch::kFloat64 && stats.dim() == 2 &&
                   stats.size(0) == 3 && stats.size(1) == kLevelStatBins,
               "level statistics must be a kFloat64 tensor of shape [3, ", kLevelStatBins,
               "], got ", stats.defined() ? stats.sizes() : torch::IntArrayRef{});
  SADDLE_CHECK(torch::isfinite(stats).all().item<bool>(),
               "level statistics contain non-finite values");
  SADDLE_CHECK((stats[0] >= 0).all().item<bool>(), "level statistics contain negative weights");
}

double expected_variance(const std::vector<float>& levels, const torch::Tensor& stats) {
  check_levels(levels, static_cast<int>(levels.size()));
  return variance_of(levels, points_of(stats));
}

std::vector<float> fit_alq_levels(const std::vector<float>& initial, const torch::Tensor& stats) {
  const int count = static_cast<int>(initial.size());
  check_levels(initial, count);
  const std::vector<Point> points = points_of(stats);
  // Coordinate descent from `start` to a local optimum: (levels, variance).
  auto descend = [&](std::vector<double> levels) {
    double best = variance_of(levels, points);
    constexpr int kMaxSweeps = 100;
    auto by_m = [](const Point& p, double m) { return p.m < m; };
    for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
      for (int j = 1; j + 1 < count; ++j) {
        const double lo = levels[j - 1], hi = levels[j + 1];
        auto first = std::lower_bound(points.begin(), points.end(), lo, by_m);
        while (first != points.end() && first->m <= lo) ++first;
        auto last = std::lower_bound(first, points.end(), hi, by_m);
        if (first == last) continue;
        // d/dl_j of the variance is sum_{r < l_j} w (r - lo) - sum_{r > l_j} w (hi - r):
        // piecewise constant and increasing, so the minimizer is the first point where it turns
        // non-negative.
        double right = 0;
        for (auto it = first; it != last; ++it) right += it->w * hi - it->s1;
        double left = 0;
        for (auto it = first; it != last; ++it) {
          left += it->s1 - it->w * lo;
          right -= it->w * hi - it->s1;
          if (left >= right) {
            levels[j] = it->m;
            break;
          }
        }
      }
      const double v = variance_of(levels, points);
      const bool converged = v >= best * (1 - 1e-9);
      best = std::min(best, v);
      if (converged) break;
    }
    return std::make_pair(levels, best);
  };
  // The descent from the best of `initial`, uniform and exponential (1/2) levels...
  std::vector<std::vector<double>> starts;
  starts.emplace_back(initial.begin(), initial.end());
  const auto uniform = uniform_levels(count);
  starts.emplace_back(uniform.begin(), uniform.end());
  const auto exponential = exponential_levels(count, 0.5);
  starts.emplace_back(exponential.begin(), exponential.end());
  std::vector<double> start;
  double start_variance = INFINITY;
  for (const auto& s : starts) {
    const double v = variance_of(s, points);
    if (v < start_variance) start_variance = v, start = s;
  }
  auto result = descend(start);
  // ...and, kept only where it ends lower, the descent from AMQ's fitted exponential levels. With
  // many levels the first one can stop in a poor local optimum (measured on WGAN-GP operators: 7
  // bits worse than 6); this way ALQ never predicts more variance than AMQ.
  const std::vector<float> amq = fit_amq_levels(count, stats);
  auto from_amq = descend(std::vector<double>(amq.begin(), amq.end()));
  if (from_amq.second < result.second * (1 - 1e-9)) result = std::move(from_amq);
  return to_float_levels(result.first);
}

std::vector<float> fit_amq_levels(int count, const torch::Tensor& stats, double* multiplier) {
  const std::vector<Point> points = points_of(stats);
  // The smallest multiplier whose smallest level p^(count-2) is still a normal float.
  const double p_min =
      std::max(0.01, std::exp(std::log(static_cast<double>(FLT_MIN) * 4) / std::max(1, count - 2)));
  const double p_max = 0.99;
  auto objective = [&](double p) { return variance_of(exponential_levels(count, p), points); };
  constexpr int kGrid = 98;
  double best_p = 0.5, best = objective(0.5);
  const double step = (p_max - p_min) / kGrid;
  for (int k = 0; k <= kGrid; ++k) {
    const double p = p_min + k * step;
    const double v = objective(p);
    if (v < best) best = v, best_p = p;
  }
  double a = std::max(p_min, best_p - step), b = std::min(p_max, best_p + step);
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = objective(c), fd = objective(d);
  for (int it = 0; it < 40; ++it) {
    if (fc < fd) {
      b = d, d = c, fd = fc, c = b - g * (b - a), fc = objective(c);
    } else {
      a = c, c = d, fc = fd, d = a + g * (b - a), fd = objective(d);
    }
  }
  const double refined = fc < fd ? c : d;
  if (std::min(fc, fd) < best) best_p = refined;
  if (multiplier) *multiplier = best_p;
  return exponential_levels(count, best_p);
}

}  // namespace saddle
