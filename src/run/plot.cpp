#include "saddle/run/plot.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "saddle/error.h"
#include "canvas.h"
#include "saddle/run/images.h"

namespace saddle {

namespace {

using run_detail::Canvas;
using run_detail::Rgb;
constexpr Rgb kInk = {40, 40, 40};
constexpr Rgb kGrid = {225, 225, 225};
// The matplotlib "tab10" colours, one per series (repeating after ten).
constexpr std::array<Rgb, 10> kPalette = {{{31, 119, 180},
                                           {255, 127, 14},
                                           {44, 160, 44},
                                           {214, 39, 40},
                                           {148, 103, 189},
                                           {140, 86, 75},
                                           {227, 119, 194},
                                           {127, 127, 127},
                                           {188, 189, 34},
                                           {23, 190, 207}}};

// About five round tick values covering [lo, hi].
std::vector<double> linear_ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * magnitude;
    if (span / step <= 6) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) {
    ticks.push_back(std::abs(t) < 1e-12 * step ? 0.0 : t);
  }
  return ticks;
}

std::string tick_label(double v, bool log_axis) {
  if (log_axis) return fmt::format("1e{}", static_cast<int>(std::lround(v)));
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.1e}", v);
  return fmt::format("{:g}", v);
}

}  // namespace

void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                     const PlotOptions& options) {
  SADDLE_CHECK(options.width >= 320 && options.height >= 240 && options.width <= 8192 &&
                   options.height <= 8192,
               "plot size ", options.width, "x", options.height, " out of range");
  const bool log_y = options.log_y;
  auto usable = [log_y](double v) { return std::isfinite(v) && (!log_y || v > 0); };
  auto ty = [log_y](double v) { return log_y ? std::log10(v) : v; };
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = x_lo, y_hi = -x_lo;
  for (const PlotSeries& s : series) {
    SADDLE_CHECK(s.x.size() == s.y.size(), "plot series '", s.label, "': x and y differ in length");
    const bool band = s.lo.size() == s.x.size() && s.hi.size() == s.x.size();
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i])) continue;
      for (double v : band ? std::vector<double>{s.y[i], s.lo[i], s.hi[i]}
                           : std::vector<double>{s.y[i]}) {
        if (!usable(v)) continue;
        x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
        y_lo = std::min(y_lo, ty(v)), y_hi = std::max(y_hi, ty(v));
      }
    }
  }
  SADDLE_CHECK(std::isfinite(x_lo) && std::isfinite(y_lo), "plot ", path,
               ": no finite values to draw", log_y ? " (a log axis needs positive values)" : "");
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  if (y_hi <= y_lo) {
    const double pad = log_y ? 0.5 : std::max(1e-12, std::abs(y_lo) * 0.1 + (y_lo == 0));
    y_lo -= pad, y_hi += pad;
  }
  if (log_y) {
    y_lo = std::floor(y_lo), y_hi = std::ceil(y_hi);
  } else {
    const double pad = 0.05 * (y_hi - y_lo);
    y_lo -= pad, y_hi += pad;
  }

  Canvas pic(options.width, options.height);
  const int left = 110, top = 70, right = options.width - 230, bottom = options.height - 70;
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * (right - left); };
  auto py = [&](double y) { return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top); };

  // Grid and ticks.
  std::vector<double> yt;
  if (log_y) {
    const int decades = static_cast<int>(y_hi - y_lo);
    const int every = std::max(1, decades / 8);
    for (double e = y_lo; e <= y_hi + 1e-9; e += every) yt.push_back(e);
  } else {
    yt = linear_ticks(y_lo, y_hi);
  }
  for (double t : yt) {
    const int y = static_cast<int>(std::lround(py(t)));
    pic.line(left, y, right, y, kGrid, 1);
    const std::string label = tick_label(t, log_y);
    pic.text(left - 10 - Canvas::text_width(label), y - 6, label, kInk);
  }
  for (double t : linear_ticks(x_lo, x_hi)) {
    const int x = static_cast<int>(std::lround(px(t)));
    pic.line(x, top, x, bottom, kGrid, 1);
    const std::string label = tick_label(t, false);
    pic.text(x - Canvas::text_width(label) / 2, bottom + 10, label, kInk);
  }

  // Bands, then lines, then the frame on top.
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const Rgb& color = kPalette[k % kPalette.size()];
    if (s.lo.size() != s.x.size() || s.hi.size() != s.x.size()) continue;
    for (size_t i = 0; i + 1 < s.x.size(); ++i) {
      if (!usable(s.lo[i]) || !usable(s.hi[i]) || !usable(s.lo[i + 1]) || !usable(s.hi[i + 1]))
        continue;
      const double xa = px(s.x[i]), xb = px(s.x[i + 1]);
      // Columns [ceil(xa), ceil(xb)): a column where two segments meet is tinted once.
      const bool last = i + 2 == s.x.size();
      const int x_end = last ? static_cast<int>(std::floor(std::max(xa, xb)))
                             : static_cast<int>(std::ceil(std::max(xa, xb))) - 1;
      for (int x = static_cast<int>(std::ceil(std::min(xa, xb))); x <= x_end; ++x) {
        const double t = xb == xa ? 0.0 : (x - xa) / (xb - xa);
        const double lo = py(ty(s.lo[i]) + t * (ty(s.lo[i + 1]) - ty(s.lo[i])));
        const double hi = py(ty(s.hi[i]) + t * (ty(s.hi[i + 1]) - ty(s.hi[i])));
        for (int y = static_cast<int>(std::min(lo, hi)); y <= static_cast<int>(std::max(lo, hi));
             ++y) {
          if (y >= top && y <= bottom) pic.tint(x, y, color);
        }
      }
    }
  }
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const Rgb& color = kPalette[k % kPalette.size()];
    bool have = false;
    double x0 = 0, y0 = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.y[i]) || !std::isfinite(s.x[i])) {
        have = false;  // a gap (a diverged or missing value) breaks the line
        continue;
      }
      const double x1 = px(s.x[i]), y1 = py(ty(s.y[i]));
      if (have) pic.line(x0, y0, x1, y1, color, 2);
      if (s.x.size() == 1) pic.rect(static_cast<int>(x1) - 3, static_cast<int>(y1) - 3,
                                    static_cast<int>(x1) + 4, static_cast<int>(y1) + 4, color);
      x0 = x1, y0 = y1, have = true;
    }
  }
  pic.line(left, top, right, top, kInk, 1);
  pic.line(left, bottom, right, bottom, kInk, 1);
  pic.line(left, top, left, bottom, kInk, 1);
  pic.line(right, top, right, bottom, kInk, 1);

  // Title, axis labels, legend.
  pic.text(std::max<int64_t>(12, (left + right - Canvas::text_width(options.title)) / 2), 12,
           options.title, kInk);
  pic.text((left + right - Canvas::text_width(options.x_label)) / 2, bottom + 38,
           options.x_label, kInk);
  pic.text(12, top - 28, options.y_label + (log_y ? " (log scale)" : ""), kInk);
  int ly = top + 4;
  for (size_t k = 0; k < series.size(); ++k) {
    const Rgb& color = kPalette[k % kPalette.size()];
    pic.rect(right + 16, ly + 3, right + 40, ly + 9, color);
    std::string label = series[k].label;
    if (label.size() > 22) label = label.substr(0, 21) + "~";
    pic.text(right + 48, ly, label, kInk);
    ly += 24;
  }
  write_png(path, pic.pixels());
}

}  // namespace saddle
