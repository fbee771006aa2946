// PNG output of a run: grids of generated images (image GANs) and scatter plots of 2-D samples
// over the target modes (mixture-of-Gaussians GANs). Written by the runner next to metrics.jsonl;
// like every output file, a PNG is written to a temporary name and renamed into place, so a
// reader never sees half an image.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace saddle {

// uint8 pixels [H, W, C], C = 1 (grey), 3 (RGB) or 4 (RGBA) -> the bytes of a PNG file.
std::string encode_png(const torch::Tensor& pixels);

// encode_png, written atomically to `path`.
void write_png(const std::string& path, const torch::Tensor& pixels);

// Images [N, C, H, W] (C = 1 or 3) with values in [-1, 1] (clamped) tiled row by row into a grid
// of `columns` columns separated by `padding` black pixels.
void write_image_grid(const std::string& path, const torch::Tensor& images, int64_t columns = 8,
                      int64_t padding = 2);

struct ScatterOptions {
  // Side of the square canvas in pixels.
  TORCH_ARG(int64_t, size) = 512;
  // The square [lo, hi]^2 shown. When lo >= hi: the bounding box of the modes (of the samples
  // when there are no modes) grown by a quarter of its extent on each side.
  TORCH_ARG(double, lo) = 0.0;
  TORCH_ARG(double, hi) = 0.0;
};

// A white canvas with grey axes (ticks at integers) and a black frame; `samples` [N, 2] as blue
// dots, `modes` [M, 2] (may be empty) as red crosses on top. Points outside the bounds are
// dropped. Returns nothing; throws saddle::Error on bad shapes or an unwritable path.
void write_scatter(const std::string& path, const torch::Tensor& samples,
                   const torch::Tensor& modes, const ScatterOptions& options = ScatterOptions());

}  // namespace saddle
