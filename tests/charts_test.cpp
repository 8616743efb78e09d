// The run's charts: axes at round numbers, the clients' mean beside the server loss, and a mark
// at every round that left a client out.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "aggregator/run_outputs.h"

using namespace zk0;
using nlohmann::json;

namespace {

bool is_multiple(double v, double step) { return std::fabs(v / step - std::round(v / step)) < 1e-6; }

double mantissa(double step) { return step / std::pow(10.0, std::floor(std::log10(step) + 1e-9)); }

}  // namespace

TEST(Charts, RoundAxesTickAtWholeRounds) {
  const Axis twelve = nice_axis(0, 12, 10, true);
  EXPECT_EQ(twelve.step, 2);
  EXPECT_EQ(twelve.ticks(), (std::vector<double>{0, 2, 4, 6, 8, 10, 12}));
  EXPECT_EQ(twelve.label(4), "4");
  const Axis three = nice_axis(0, 3, 10, true);  // never 0.5 steps between rounds
  EXPECT_EQ(three.step, 1);
  EXPECT_EQ(three.ticks(), (std::vector<double>{0, 1, 2, 3}));
  const Axis one_round = nice_axis(0, 0, 10, true);
  EXPECT_EQ(one_round.ticks(), (std::vector<double>{0, 1}));
}

TEST(Charts, LossAxesTickAtRoundNumbers) {
  const Axis loss = nice_axis(0.134, 0.912, 6, false);
  EXPECT_DOUBLE_EQ(loss.step, 0.2);
  EXPECT_DOUBLE_EQ(loss.lo, 0);
  EXPECT_DOUBLE_EQ(loss.hi, 1);
  std::vector<std::string> labels;
  for (double t : loss.ticks()) labels.push_back(loss.label(t));
  EXPECT_EQ(labels, (std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}));
  const Axis flat = nice_axis(0.38, 0.38, 6, false);  // one value still gets a readable window
  EXPECT_LT(flat.lo, 0.38);
  EXPECT_GT(flat.hi, 0.38);
}

TEST(Charts, EveryAxisIsNiceCoversItsDataAndFitsItsTicks) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 5000; ++i) {
    const double scale = std::pow(10.0, std::uniform_real_distribution<double>(-4, 4)(rng));
    double a = std::uniform_real_distribution<double>(-1, 1)(rng) * scale, b = std::uniform_real_distribution<double>(-1, 1)(rng) * scale;
    const bool integers = i % 2 == 0;
    if (integers) a = std::round(std::fabs(a)), b = std::round(std::fabs(b));
    const double lo = std::min(a, b), hi = std::max(a, b);
    const int max_ticks = 4 + i % 8;
    const Axis axis = nice_axis(lo, hi, max_ticks, integers);
    SCOPED_TRACE(std::to_string(lo) + " .. " + std::to_string(hi) + " in " + std::to_string(max_ticks));
    const double m = mantissa(axis.step);
    EXPECT_TRUE(std::fabs(m - 1) < 1e-6 || std::fabs(m - 2) < 1e-6 || std::fabs(m - 5) < 1e-6) << axis.step;
    EXPECT_LE(axis.lo, lo);
    EXPECT_GE(axis.hi, hi);
    const auto ticks = axis.ticks();
    EXPECT_LE(ticks.size(), static_cast<size_t>(max_ticks) + 1);
    EXPECT_GE(ticks.size(), 2u);
    for (double t : ticks) {
      EXPECT_TRUE(is_multiple(t, axis.step)) << t << " step " << axis.step;
      if (integers) {
        EXPECT_EQ(t, std::round(t));
      }
    }
  }
}

TEST(Charts, ServerChartShowsTheClientsMeanAndMarksRoundsThatLeftAClientOut) {
  const json history = json::parse(R"([
    {"round": 0, "server_eval_loss": 1.5, "clients": []},
    {"round": 1, "server_eval_loss": 1.0, "clients": [
      {"client": "a", "status": "accepted", "loss": 1.0}, {"client": "b", "status": "accepted", "loss": 3.0}]},
    {"round": 2, "server_eval_loss": null, "clients": [
      {"client": "a", "status": "accepted", "loss": 0.5}, {"client": "b", "status": "rejected"},
      {"client": "c", "status": "dropped"}]},
    {"round": 3, "server_eval_loss": 0.7, "clients": [
      {"client": "a", "status": "accepted", "loss": 0.25}, {"client": "b", "status": "timed_out"},
      {"client": "c", "status": "accepted", "loss": 0.75}]}
  ])");
  const Chart server = server_loss_chart(history, "demo");
  EXPECT_TRUE(server.integer_x);
  ASSERT_EQ(server.series.size(), 2u);
  EXPECT_EQ(server.series[0].x, (std::vector<double>{0, 1, 3}));
  EXPECT_EQ(server.series[0].y, (std::vector<double>{1.5, 1.0, 0.7}));
  EXPECT_EQ(server.series[1].label, "clients' mean (training)");
  EXPECT_EQ(server.series[1].x, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(server.series[1].y, (std::vector<double>{2.0, 0.5, 0.5}));
  ASSERT_EQ(server.markers.size(), 2u);
  EXPECT_EQ(server.markers[0].x, 2);
  EXPECT_EQ(server.markers[0].label, "1 dropped, 1 rejected");
  EXPECT_EQ(server.markers[1].x, 3);
  EXPECT_EQ(server.markers[1].label, "1 timed_out");

  const Chart clients = client_loss_chart(history, "demo");
  ASSERT_EQ(clients.series.size(), 3u);
  EXPECT_EQ(clients.series[0].label, "a");
  EXPECT_EQ(clients.series[0].x, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(clients.series[2].label, "c");
  EXPECT_EQ(clients.series[2].x, (std::vector<double>{3}));
}
