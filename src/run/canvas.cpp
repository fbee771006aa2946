#include "canvas.h"

// stb_easy_font (Debian libstb-dev) is header-only with internal linkage: quads of a bitmap font.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace saddle::run_detail {

void Canvas::text(int64_t x, int64_t y, const std::string& s, const Rgb& c, int scale) {
  static thread_local char buffer[64 * 1024];
  const int quads =
      stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buffer, sizeof buffer);
  for (int q = 0; q < quads; ++q) {
    // Four vertices of 16 bytes (x, y, z, colour); the quads are axis-aligned rectangles.
    const float* v = reinterpret_cast<const float*>(buffer + q * 64);
    const float x0 = std::min(v[0], v[8]), x1 = std::max(v[0], v[8]);
    const float y0 = std::min(v[1], v[9]), y1 = std::max(v[1], v[9]);
    rect(x + static_cast<int64_t>(x0 * scale), y + static_cast<int64_t>(y0 * scale),
         x + static_cast<int64_t>(x1 * scale), y + static_cast<int64_t>(y1 * scale), c);
  }
}

int64_t Canvas::text_width(const std::string& s, int scale) {
  return static_cast<int64_t>(stb_easy_font_width(const_cast<char*>(s.c_str()))) * scale;
}

}  // namespace saddle::run_detail
