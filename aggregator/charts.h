#pragma once
// Line charts of metrics against round, drawn once with cairo onto an SVG and a PNG surface.
#include <string>
#include <vector>

namespace zk0 {

struct Series {
  std::string label;
  std::vector<double> x, y;
  bool dashed = false;
};

// A vertical line at one x (a round something happened in), labelled beside it.
struct Marker {
  double x;
  std::string label;
};

struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::vector<Marker> markers;
  std::string markers_legend;   // what the markers mean, shown once in the legend
  bool integer_x = false;       // x is a count (rounds): ticks only at whole numbers
};

// An axis from lo to hi with ticks every `step`, step being 1, 2 or 5 times a power of ten (at
// least 1 when `integers`), lo and hi multiples of it, covering [data_lo, data_hi] in at most
// `max_ticks` intervals.
struct Axis {
  double lo, hi, step;
  std::vector<double> ticks() const;
  std::string label(double tick) const;  // as many decimals as the step needs, no more
};
Axis nice_axis(double data_lo, double data_hi, int max_ticks, bool integers);

// Writes <path_without_extension>.svg and .png, each atomically.
void write_chart(const Chart& chart, const std::string& path_without_extension);

}  // namespace zk0
