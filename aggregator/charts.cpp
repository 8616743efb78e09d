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

std::string format_tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 100 || v == std::floor(v) ? "%.0f" : "%.3g", v);
  return buf;
}

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
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x1 = x0 + 1;
  if (y1 - y0 < 1e-12) y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - y0) / (y1 - y0) * ph; };

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // grid and ticks
  cairo_set_line_width(cr, 1);
  cairo_set_font_size(cr, 11);
  for (int i = 0; i <= 5; ++i) {
    const double yv = y0 + (y1 - y0) * i / 5, xv = x0 + (x1 - x0) * i / 5;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, kLeft, py(yv));
    cairo_line_to(cr, kLeft + pw, py(yv));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, kLeft - 46, py(yv) + 4);
    cairo_show_text(cr, format_tick(yv).c_str());
    cairo_move_to(cr, px(xv) - 8, kTop + ph + 18);
    cairo_show_text(cr, format_tick(xv).c_str());
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

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const auto& s = chart.series[si];
    const double* c = kPalette[si % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, si == 0 ? 2.5 : 1.5);
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
    const double ly = kTop + 14 + 18 * static_cast<double>(si);
    cairo_rectangle(cr, kLeft + pw + 12, ly - 8, 14, 4);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, kLeft + pw + 32, ly - 2);
    cairo_show_text(cr, s.label.c_str());
  }
}

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

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
