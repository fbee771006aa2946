#include "saddle/run/images.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "canvas.h"
#include "saddle/error.h"
#include "saddle/run/files.h"

// stb_image_write is header-only (Debian libstb-dev); compiled here with internal linkage so it
// cannot clash with another copy of stb linked into the same program.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace saddle {

namespace {

using run_detail::Canvas;
using run_detail::Rgb;
constexpr Rgb kBlack = {0, 0, 0};
constexpr Rgb kAxis = {200, 200, 200};
constexpr Rgb kSample = {31, 119, 180};
constexpr Rgb kMode = {214, 39, 40};

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

}  // namespace

std::string encode_png(const torch::Tensor& pixels) {
  SADDLE_CHECK(pixels.dim() == 3 && pixels.scalar_type() == torch::kUInt8,
               "encode_png: expected uint8 pixels [H, W, C], got ", pixels.sizes(), " ",
               pixels.scalar_type());
  const int64_t h = pixels.size(0), w = pixels.size(1), c = pixels.size(2);
  SADDLE_CHECK(h > 0 && w > 0 && h < (1 << 16) && w < (1 << 16), "encode_png: bad image size ", h,
               "x", w);
  SADDLE_CHECK(c == 1 || c == 3 || c == 4, "encode_png: expected 1, 3 or 4 channels, got ", c);
  torch::Tensor contiguous = pixels.contiguous();
  std::string out;
  const int ok = stbi_write_png_to_func(append_bytes, &out, static_cast<int>(w),
                                        static_cast<int>(h), static_cast<int>(c),
                                        contiguous.data_ptr<uint8_t>(), static_cast<int>(w * c));
  SADDLE_CHECK(ok != 0 && !out.empty(), "encode_png: stb_image_write failed on a ", h, "x", w,
               " image");
  return out;
}

void write_png(const std::string& path, const torch::Tensor& pixels) {
  write_file_atomic(path, encode_png(pixels));
}

void write_image_grid(const std::string& path, const torch::Tensor& images, int64_t columns,
                      int64_t padding) {
  SADDLE_CHECK(
      images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3) && images.size(0) > 0,
      "write_image_grid: expected images [N, 1 or 3, H, W], got ", images.sizes());
  SADDLE_CHECK(columns > 0 && padding >= 0, "write_image_grid: bad columns ", columns,
               " or padding ", padding);
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min(columns, n);
  const int64_t rows = (n + cols - 1) / cols;
  torch::Tensor pixels = images.detach()
                             .to(torch::kCPU, torch::kFloat32)
                             .clamp(-1.0, 1.0)
                             .add(1.0)
                             .mul(127.5)
                             .round()
                             .to(torch::kUInt8);
  torch::Tensor grid = torch::zeros(
      {rows * (h + padding) + padding, cols * (w + padding) + padding, c}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = padding + (i / cols) * (h + padding);
    const int64_t left = padding + (i % cols) * (w + padding);
    grid.narrow(0, top, h).narrow(1, left, w).copy_(pixels[i].permute({1, 2, 0}));
  }
  write_png(path, grid);
}

void write_scatter(const std::string& path, const torch::Tensor& samples,
                   const torch::Tensor& modes, const ScatterOptions& options) {
  SADDLE_CHECK(samples.dim() == 2 && samples.size(1) == 2,
               "write_scatter: expected samples [N, 2], got ", samples.sizes());
  SADDLE_CHECK(!modes.defined() || modes.numel() == 0 || (modes.dim() == 2 && modes.size(1) == 2),
               "write_scatter: expected modes [M, 2], got ", modes.sizes());
  const int64_t side = options.size();
  SADDLE_CHECK(side >= 16 && side <= 8192, "write_scatter: bad canvas size ", side);
  torch::NoGradGuard no_grad;
  torch::Tensor xs = samples.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  torch::Tensor ms = modes.defined() && modes.numel() > 0
                         ? modes.detach().to(torch::kCPU, torch::kFloat64).contiguous()
                         : torch::empty({0, 2}, torch::kFloat64);
  double lo = options.lo(), hi = options.hi();
  if (!(lo < hi)) {
    const torch::Tensor& ref = ms.size(0) > 0 ? ms : xs;
    torch::Tensor finite = ref.index({ref.isfinite().all(1)});
    if (finite.size(0) == 0) {
      lo = -1.0;
      hi = 1.0;
    } else {
      lo = finite.min().item<double>();
      hi = finite.max().item<double>();
      const double margin = std::max(0.25 * (hi - lo), 0.5);
      lo -= margin;
      hi += margin;
    }
  }
  const double scale = static_cast<double>(side - 1) / (hi - lo);
  auto col_of = [&](double x) { return static_cast<int64_t>(std::lround((x - lo) * scale)); };
  auto row_of = [&](double y) { return static_cast<int64_t>(std::lround((hi - y) * scale)); };
  auto inside = [&](double v) { return std::isfinite(v) && v >= lo && v <= hi; };

  Canvas canvas(side, side);
  // Axes through the origin with a tick at every integer, then the frame.
  if (lo < 0.0 && hi > 0.0) {
    const int64_t r0 = row_of(0.0), c0 = col_of(0.0);
    for (int64_t k = 0; k < side; ++k) {
      canvas.set(k, r0, kAxis);
      canvas.set(c0, k, kAxis);
    }
    if (hi - lo <= 200.0) {
      for (double t = std::ceil(lo); t <= hi; t += 1.0) {
        for (int64_t d = -3; d <= 3; ++d) {
          canvas.set(col_of(t), r0 + d, kAxis);
          canvas.set(c0 + d, row_of(t), kAxis);
        }
      }
    }
  }
  for (int64_t k = 0; k < side; ++k) {
    canvas.set(k, 0, kBlack);
    canvas.set(k, side - 1, kBlack);
    canvas.set(0, k, kBlack);
    canvas.set(side - 1, k, kBlack);
  }
  const double* s = xs.data_ptr<double>();
  for (int64_t i = 0; i < xs.size(0); ++i) {
    const double x = s[2 * i], y = s[2 * i + 1];
    if (!inside(x) || !inside(y)) continue;
    const int64_t r = row_of(y), c = col_of(x);
    for (int64_t dr = -1; dr <= 1; ++dr) {
      for (int64_t dc = -1; dc <= 1; ++dc) canvas.set(c + dc, r + dr, kSample);
    }
  }
  const double* m = ms.data_ptr<double>();
  for (int64_t i = 0; i < ms.size(0); ++i) {
    const double x = m[2 * i], y = m[2 * i + 1];
    if (!inside(x) || !inside(y)) continue;
    const int64_t r = row_of(y), c = col_of(x);
    for (int64_t d = -6; d <= 6; ++d) {
      for (int64_t t = 0; t <= 1; ++t) {  // two pixels thick
        canvas.set(c + d + t, r + d, kMode);
        canvas.set(c - d + t, r + d, kMode);
      }
    }
  }
  write_png(path, canvas.pixels());
}

}  // namespace saddle
