#pragma once
// Line charts of metrics against round, drawn once with cairo onto an SVG and a PNG surface.
#include <string>
#include <vector>

namespace zk0 {

struct Series {
  std::string label;
  std::vector<double> x, y;
};

struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

// Writes <path_without_extension>.svg and .png, each atomically.
void write_chart(const Chart& chart, const std::string& path_without_extension);

}  // namespace zk0
