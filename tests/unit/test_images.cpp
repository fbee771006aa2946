// PNG output: valid files (signature, IHDR size), written atomically, bad input rejected.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "paths.h"
#include "saddle/error.h"
#include "saddle/run/images.h"
#include "saddle/run/plot.h"

// stb_image decodes the plots back to pixels (Debian libstb-dev, header-only, internal linkage).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace saddle {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

// Checks the PNG signature and the IHDR chunk: width, height, colour type.
void expect_png(const std::string& bytes, uint32_t width, uint32_t height, int color_type) {
  ASSERT_GT(bytes.size(), 33u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(be32(bytes, 8), 13u);
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(bytes, 16), width);
  EXPECT_EQ(be32(bytes, 20), height);
  EXPECT_EQ(static_cast<int>(bytes[24]), 8);  // bit depth
  EXPECT_EQ(static_cast<int>(bytes[25]), color_type);
  EXPECT_EQ(bytes.substr(bytes.size() - 8, 4), "IEND");
}

class ImageOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (saddle::testing::temp_root() / ("saddle_test_images_" + std::to_string(::getpid())))
               .string();
    saddle::create_directories(dir_);
  }
  void TearDown() override { saddle::remove_tree(dir_); }
  std::string dir_;
};

TEST_F(ImageOutput, GridOfGreyAndColourImages) {
  // 10 grey 32x32 images in 4 columns with 2-pixel padding: 4*34+2 wide, 3*34+2 high.
  torch::Tensor grey = torch::linspace(-1.5, 1.5, 10 * 32 * 32).reshape({10, 1, 32, 32});
  write_image_grid(dir_ + "/grey.png", grey, 4);
  expect_png(read_all(dir_ + "/grey.png"), 138, 104, 0);
  torch::Tensor rgb = torch::zeros({3, 3, 8, 8});
  write_image_grid(dir_ + "/rgb.png", rgb, 8, 0);
  expect_png(read_all(dir_ + "/rgb.png"), 24, 8, 2);
  // Written atomically: no temporary file is left behind.
  EXPECT_EQ(saddle::list_directory(dir_), (std::vector<std::string>{"grey.png", "rgb.png"}));
  EXPECT_THROW(write_image_grid(dir_ + "/bad.png", torch::zeros({2, 2, 8, 8})), Error);
  EXPECT_THROW(write_image_grid(dir_ + "/no/such/dir/x.png", rgb), Error);
}

TEST_F(ImageOutput, ScatterOfSamplesOverModes) {
  torch::Tensor samples = torch::randn({500, 2}) * 2;
  samples[0][0] = std::numeric_limits<float>::quiet_NaN();  // dropped, not a crash
  torch::Tensor modes = torch::tensor({{2.0f, 0.0f}, {-2.0f, 0.0f}, {0.0f, 2.0f}});
  write_scatter(dir_ + "/scatter.png", samples, modes, ScatterOptions().size(200));
  expect_png(read_all(dir_ + "/scatter.png"), 200, 200, 2);
  write_scatter(dir_ + "/auto.png", samples, torch::Tensor());
  expect_png(read_all(dir_ + "/auto.png"), 512, 512, 2);
  write_scatter(dir_ + "/bounds.png", samples, modes, ScatterOptions().lo(-5).hi(5).size(64));
  expect_png(read_all(dir_ + "/bounds.png"), 64, 64, 2);
  EXPECT_THROW(write_scatter(dir_ + "/bad.png", torch::zeros({4, 3}), modes), Error);
}

TEST_F(ImageOutput, EncodedPixelsRoundTripTheirSize) {
  torch::Tensor pixels = torch::randint(0, 256, {7, 5, 4}, torch::kUInt8);
  expect_png(encode_png(pixels), 5, 7, 6);
  EXPECT_THROW(encode_png(torch::zeros({7, 5, 2}, torch::kUInt8)), Error);
  EXPECT_THROW(encode_png(torch::zeros({7, 5, 3})), Error);
}

}  // namespace
}  // namespace saddle

namespace saddle {
namespace {

// Counts the pixels of one colour in a decoded RGB picture.
int64_t count_colour(const unsigned char* rgb, int w, int h, int r, int g, int b) {
  int64_t n = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(w) * h; ++i) {
    n += rgb[3 * i] == r && rgb[3 * i + 1] == g && rgb[3 * i + 2] == b;
  }
  return n;
}

TEST_F(ImageOutput, LinePlotDrawsEverySeriesItsBandAndALegend) {
  PlotSeries a{"falls", {0, 1, 2, 3, 4}, {1, 0.1, 0.01, 1e-3, 1e-4}, {}, {}};
  a.lo = {0.5, 0.05, 0.005, 5e-4, 5e-5};
  a.hi = {2, 0.2, 0.02, 2e-3, 2e-4};
  PlotSeries b{"flat with a gap", {0, 1, 2, 3, 4}, {0.5, 0.5, std::nan(""), 0.5, 0.5}, {}, {}};
  PlotOptions options;
  options.title = "distance";
  options.x_label = "iteration";
  options.y_label = "distance_sq";
  options.log_y = true;
  write_line_plot(dir_ + "/plot.png", {a, b}, options);
  if (const char* keep = std::getenv("SADDLE_KEEP_PLOT")) write_line_plot(keep, {a, b}, options);
  const std::string bytes = read_all(dir_ + "/plot.png");
  expect_png(bytes, 960, 560, 2);
  int w = 0, h = 0, channels = 0;
  unsigned char* rgb = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()),
                                             static_cast<int>(bytes.size()), &w, &h, &channels, 3);
  ASSERT_NE(rgb, nullptr);
  EXPECT_GT(count_colour(rgb, w, h, 31, 119, 180), 500);   // the first line and its swatch
  EXPECT_GT(count_colour(rgb, w, h, 255, 127, 14), 500);   // the second
  EXPECT_GT(count_colour(rgb, w, h, 199, 221, 236), 1000);  // the first one's band, a light tint
  EXPECT_GT(count_colour(rgb, w, h, 40, 40, 40), 500);     // frame, ticks and text
  stbi_image_free(rgb);
  // Nothing to draw on a log axis, and a series whose x and y differ: one line each.
  PlotSeries bad{"zero", {0, 1}, {0, 0}, {}, {}};
  EXPECT_THROW(write_line_plot(dir_ + "/bad.png", {bad}, options), Error);
  PlotSeries ragged{"ragged", {0, 1}, {1}, {}, {}};
  EXPECT_THROW(write_line_plot(dir_ + "/bad.png", {ragged}, options), Error);
  EXPECT_FALSE(path_exists(dir_ + "/bad.png"));
}

}  // namespace
}  // namespace saddle
