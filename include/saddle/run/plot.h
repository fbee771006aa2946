// Line plots as PNG (stage 4 of game -> exchange -> solver -> metrics): a metric against
// iterations or bytes, one line per series with an optional band (e.g. the range over seeds), a
// legend, ticks and labels. Drawn without any plotting library (stb_easy_font for the text) and
// written atomically, like every output file.
#pragma once

#include <string>
#include <vector>

namespace saddle {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  // A band around the line, drawn when both have x's length (e.g. the min and max over seeds).
  std::vector<double> lo, hi;
};

struct PlotOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_y = false;  // non-positive values are left out on a log axis
  int width = 960;
  int height = 560;
};

// Throws saddle::Error when there is nothing finite to draw, on bad sizes, or when the path
// cannot be written.
void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                     const PlotOptions& options);

}  // namespace saddle
