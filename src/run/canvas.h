// An RGB canvas with clipped pixel writes, lines, rectangles, tints and bitmap text: what the
// scatter plots (images.cpp) and the line plots (plot.cpp) draw on. Internal to src/run.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>

namespace saddle::run_detail {

using Rgb = std::array<uint8_t, 3>;

class Canvas {
 public:
  // A white canvas of width x height pixels.
  Canvas(int64_t width, int64_t height)
      : width_(width),
        height_(height),
        pixels_(torch::full({height, width, 3}, 255, torch::kUInt8)),
        data_(pixels_.data_ptr<uint8_t>()) {}

  // Pixel (x, y), x counted from the left and y from the top; outside the canvas: ignored.
  void set(int64_t x, int64_t y, const Rgb& c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* p = data_ + 3 * (y * width_ + x);
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
  }
  // A light tint of `c` over what is there (a quarter of c), so that overlapping tints all show.
  void tint(int64_t x, int64_t y, const Rgb& c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* p = data_ + 3 * (y * width_ + x);
    for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((3 * p[k] + c[k]) / 4);
  }
  // The rectangle [x0, x1) x [y0, y1).
  void rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, const Rgb& c) {
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = x0; x < x1; ++x) set(x, y, c);
  }
  // A straight line `thick` pixels wide.
  void line(double x0, double y0, double x1, double y1, const Rgb& c, int thick = 1) {
    const int64_t steps =
        static_cast<int64_t>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int64_t s = 0; s <= steps; ++s) {
      const double t = static_cast<double>(s) / static_cast<double>(steps);
      const int64_t x = std::lround(x0 + t * (x1 - x0)), y = std::lround(y0 + t * (y1 - y0));
      for (int dy = 0; dy < thick; ++dy)
        for (int dx = 0; dx < thick; ++dx) set(x + dx - thick / 2, y + dy - thick / 2, c);
    }
  }
  // Text with its top-left corner at (x, y), `scale` pixels per font unit (stb_easy_font).
  void text(int64_t x, int64_t y, const std::string& s, const Rgb& c, int scale = 2);
  static int64_t text_width(const std::string& s, int scale = 2);

  const torch::Tensor& pixels() const { return pixels_; }

 private:
  int64_t width_, height_;
  torch::Tensor pixels_;
  uint8_t* data_;
};

}  // namespace saddle::run_detail
