#include "aggregator/charts.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "core/util/fs.h"

namespace zk0 {

namespace {

constexpr double kWidth = 800, kHeight = 480, kLeft = 80, kRight = 180, kTop = 50, kBottom = 60;

const double kPalette[][3] = {{0.00, 0.00, 0.00}, {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17},
                              {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76},
                              {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}};
const double kMarker[3] = {0.80, 0.10, 0.10};

void draw(cairo_t* cr, const Chart& chart) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : chart.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  for (const auto& m : chart.markers) x0 = std::min(x0, m.x), x1 = std::max(x1, m.x);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  const Axis xa = nice_axis(x0, x1, 10, chart.integer_x), ya = nice_axis(y0, y1, 6, false);
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - xa.lo) / (xa.hi - xa.lo) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - ya.lo) / (ya.hi - ya.lo) * ph; };

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // grid and ticks, labels right-aligned (y) and centred (x) on their tick
  cairo_set_line_width(cr, 1);
  cairo_set_font_size(cr, 11);
  cairo_text_extents_t ext;
  for (double yv : ya.ticks()) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, kLeft, py(yv));
    cairo_line_to(cr, kLeft + pw, py(yv));
    cairo_stroke(cr);
    const std::string text = ya.label(yv);
    cairo_text_extents(cr, text.c_str(), &ext);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, kLeft - 6 - ext.x_advance, py(yv) + 4);
    cairo_show_text(cr, text.c_str());
  }
  for (double xv : xa.ticks()) {
    const std::string text = xa.label(xv);
    cairo_text_extents(cr, text.c_str(), &ext);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, px(xv), kTop + ph);
    cairo_line_to(cr, px(xv), kTop + ph + 4);
    cairo_stroke(cr);
    cairo_move_to(cr, px(xv) - ext.x_advance / 2, kTop + ph + 18);
    cairo_show_text(cr, text.c_str());
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, kLeft, kTop, pw, ph);
  cairo_stroke(cr);
  cairo_set_font_size(cr, 16);
  cairo_move_to(cr, kLeft, 30);
  cairo_show_text(cr, chart.title.c_str());
  cairo_set_font_size(cr, 12);
  cairo_move_to(cr, kLeft + pw / 2 - 20, kHeight - 20);
  cairo_show_text(cr, chart.x_label.c_str());
  cairo_save(cr);
  cairo_move_to(cr, 20, kTop + ph / 2 + 40);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, chart.y_label.c_str());
  cairo_restore(cr);

  const double dash[] = {5, 4};
  double legend_y = kTop + 14;
  cairo_set_font_size(cr, 11);
  for (const auto& m : chart.markers) {
    cairo_set_source_rgb(cr, kMarker[0], kMarker[1], kMarker[2]);
    cairo_set_line_width(cr, 1);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, px(m.x), kTop);
    cairo_line_to(cr, px(m.x), kTop + ph);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    cairo_save(cr);
    cairo_move_to(cr, px(m.x) + 4, kTop + 6);  // rotated a quarter turn: glyphs extend right of this
    cairo_rotate(cr, M_PI / 2);
    cairo_show_text(cr, m.label.c_str());
    cairo_restore(cr);
  }

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const auto& s = chart.series[si];
    const double* c = kPalette[si % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, si == 0 ? 2.5 : 1.5);
    if (s.dashed) cairo_set_dash(cr, dash, 2, 0);
    bool pen = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) {
        pen = false;
        continue;
      }
      if (pen) cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
      else cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
      pen = true;
    }
    cairo_stroke(cr);
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i])) {
        cairo_arc(cr, px(s.x[i]), py(s.y[i]), 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
      }
    cairo_move_to(cr, kLeft + pw + 12, legend_y - 6);
    cairo_line_to(cr, kLeft + pw + 26, legend_y - 6);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, kLeft + pw + 32, legend_y - 2);
    cairo_show_text(cr, s.label.c_str());
    legend_y += 18;
  }
  if (!chart.markers.empty() && !chart.markers_legend.empty()) {
    cairo_set_source_rgb(cr, kMarker[0], kMarker[1], kMarker[2]);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, kLeft + pw + 19, legend_y - 12);
    cairo_line_to(cr, kLeft + pw + 19, legend_y);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, kLeft + pw + 32, legend_y - 2);
    cairo_show_text(cr, chart.markers_legend.c_str());
  }
}

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

Axis nice_axis(double lo, double hi, int max_ticks, bool integers) {
  if (!(hi - lo > 1e-12 * std::max(1.0, std::fabs(lo)))) {  // one value: a unit-wide window around it
    lo -= integers ? 0 : 0.5 * std::max(std::fabs(lo), 1e-3);
    hi = integers ? lo + 1 : lo + std::max(std::fabs(lo), 2e-3);
  }
  const double raw = (hi - lo) / std::max(1, max_ticks);
  double step = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * step >= raw * (1 - 1e-9)) {
      step *= m;
      break;
    }
  if (integers) step = std::max(1.0, std::round(step));
  // Widen the step until the rounded-out bounds fit in max_ticks intervals.
  Axis a{};
  for (;;) {
    a = {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
    if ((a.hi - a.lo) / step <= max_ticks + 1e-9) return a;
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    step *= mantissa < 1.5 ? 2 : mantissa < 3 ? 2.5 : 2;
  }
}

std::vector<double> Axis::ticks() const {
  std::vector<double> t;
  const long n = std::lround((hi - lo) / step);
  for (long i = 0; i <= n; ++i) {
    const double v = lo + static_cast<double>(i) * step;
    t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);  // no "-0"
  }
  return t;
}

std::string Axis::label(double tick) const {
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, tick);
  return buf;
}

void write_chart(const Chart& chart, const std::string& base) {
  std::string svg;
  {
    cairo_surface_t* surface = cairo_svg_surface_create_for_stream(append, &svg, kWidth, kHeight);
    cairo_t* cr = cairo_create(surface);
    draw(cr, chart);
    cairo_destroy(cr);
    cairo_surface_finish(surface);
    cairo_surface_destroy(surface);
  }
  std::string png;
  {
    cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, static_cast<int>(kWidth), static_cast<int>(kHeight));
    cairo_t* cr = cairo_create(surface);
    draw(cr, chart);
    cairo_destroy(cr);
    if (cairo_surface_write_to_png_stream(surface, append, &png) != CAIRO_STATUS_SUCCESS) {
      cairo_surface_destroy(surface);
      throw std::runtime_error("chart: PNG encoding failed for " + base);
    }
    cairo_surface_destroy(surface);
  }
  write_file_atomic(base + ".svg", svg);
  write_file_atomic(base + ".png", png);
}

}  // namespace zk0
