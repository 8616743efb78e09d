// Server-side strategy: FedAvg maths, client selection and the FedProx mu schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/aggregation/strategy.h"

using namespace zk0;

namespace {

std::string scratch() { return testing::TempDir() + "zk0-strategy-scratch"; }

// A fresh client name for each update: a rule takes one update per client.
std::string next_client() {
  static int n = 0;
  return "client-" + std::to_string(n++);
}

ParameterSet update(std::vector<float> w, std::vector<float> b) {
  ParameterSet p;
  Tensor tw = make_tensor("w", DType::F32, {2, 2});
  std::memcpy(tw.bytes.data(), w.data(), 16);
  Tensor tb = make_tensor("b", DType::F32, {2});
  std::memcpy(tb.bytes.data(), b.data(), 8);
  p.tensors.push_back(std::move(tw));
  p.tensors.push_back(std::move(tb));
  return p;
}

FederationSpec spec_with(StrategyType type, double mu) {
  FederationSpec s;
  s.rounds = 10;
  s.strategy.type = type;
  s.strategy.proximal_mu = mu;
  s.strategy.fraction_fit = 0.5;
  s.strategy.min_fit_clients = 2;
  s.training.local_steps = 7;
  return s;
}

}  // namespace

TEST(FedAvg, GlobalPlusTheWeightedMeanOfTheDeltas) {
  auto strategy = make_strategy(spec_with(StrategyType::FedAvg, 0), scratch());
  const ParameterSet global = update({1, 1, 1, 1}, {0.5f, 0});
  auto agg = strategy->begin_aggregation(std::make_shared<ParameterSet>(global));
  agg->add(next_client(), update({1, 2, 3, 4}, {10, 20}), 0.25);   // a quarter of the round's samples
  agg->add(next_client(), update({5, 6, 7, 8}, {-10, 0}), 0.75);
  const ParameterSet out = agg->finish().parameters;
  // g + (0.25 (a - g) + 0.75 (b - g)) / 1 = 0.25 a + 0.75 b
  const float expected_w[] = {4, 5, 6, 7}, expected_b[] = {-5, 5};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(out.tensors[0].as<float>()[i], expected_w[i]);
  for (int i = 0; i < 2; ++i) EXPECT_FLOAT_EQ(out.tensors[1].as<float>()[i], expected_b[i]);
  EXPECT_EQ(out.tensors[0].name, "w");
}

TEST(FedAvg, AClientThatDroppedOutLeavesTheOthersAveraged) {
  // Weights are shares of the round's planned samples; with one of three missing, the mean is
  // over the two that arrived.
  auto strategy = make_strategy(spec_with(StrategyType::FedAvg, 0), scratch());
  auto agg = strategy->begin_aggregation(std::make_shared<ParameterSet>(update({0, 0, 0, 0}, {0, 0})));
  agg->add(next_client(), update({2, 2, 2, 2}, {2, 2}), 1.0 / 3);
  agg->add(next_client(), update({4, 4, 4, 4}, {4, 4}), 1.0 / 3);
  const ParameterSet out = agg->finish().parameters;
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(out.tensors[0].as<float>()[i], 3.0f);
}

TEST(FedAvg, TheResultIsTheSameBitForBitWhateverOrderUpdatesArriveIn) {
  const size_t n = 20000;
  ParameterSet global;
  global.tensors.push_back(make_tensor("p", DType::F32, {static_cast<int64_t>(n)}));
  std::vector<ParameterSet> updates(3);
  for (size_t k = 0; k < updates.size(); ++k) {
    updates[k].tensors.push_back(make_tensor("p", DType::F32, {static_cast<int64_t>(n)}));
    for (size_t i = 0; i < n; ++i) {
      global.tensors[0].as<float>()[i] = static_cast<float>(std::cos(0.001 * static_cast<double>(i)));
      updates[k].tensors[0].as<float>()[i] = global.tensors[0].as<float>()[i] + static_cast<float>(1e-3 * std::sin(static_cast<double>(i * (k + 3))));
    }
  }
  const double weights[] = {0.2, 0.3, 0.5};
  std::vector<int> order = {0, 1, 2};
  std::vector<std::vector<float>> results;
  auto strategy = make_strategy(spec_with(StrategyType::FedAvg, 0), scratch());
  do {
    auto agg = strategy->begin_aggregation(std::make_shared<ParameterSet>(global));
    for (int k : order) agg->add("c" + std::to_string(k), updates[static_cast<size_t>(k)], weights[k]);
    const ParameterSet out = agg->finish().parameters;
    results.emplace_back(out.tensors[0].as<float>(), out.tensors[0].as<float>() + n);
  } while (std::next_permutation(order.begin(), order.end()));
  for (const auto& r : results) EXPECT_EQ(std::memcmp(r.data(), results[0].data(), n * sizeof(float)), 0);
  // And it is the weighted mean to within the fixed point's resolution.
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double mean = 0;
    for (size_t k = 0; k < 3; ++k) mean += weights[k] * updates[k].tensors[0].as<float>()[i];
    worst = std::max(worst, std::fabs(results[0][i] - mean));
  }
  EXPECT_LT(worst, 2e-7);
}

TEST(FedAvg, RejectsMismatchedLayoutBadWeightsAndDeltasBeyondTheBound) {
  FederationSpec spec = spec_with(StrategyType::FedAvg, 0);
  spec.strategy.max_update_norm = 10;
  auto strategy = make_strategy(spec, scratch());
  const ParameterSet global = update({0, 0, 0, 0}, {0, 0});
  auto agg = strategy->begin_aggregation(std::make_shared<ParameterSet>(global));
  ParameterSet wrong = update({1, 2, 3, 4}, {1, 2});
  wrong.tensors[1].name = "bias";
  EXPECT_THROW(agg->add(next_client(), wrong, 0.5), std::invalid_argument);
  EXPECT_THROW(agg->add(next_client(), update({1, 2, 3, 4}, {1, 2}), 0), std::invalid_argument);
  EXPECT_THROW(agg->add(next_client(), update({1, 2, 3, 4}, {1, 2}), 1.5), std::invalid_argument);
  EXPECT_THROW(agg->finish(), std::logic_error);
  agg->add(next_client(), update({1, 2, 3, 4}, {1, 2}), 0.75);
  EXPECT_THROW(agg->add(next_client(), update({1, 2, 3, 4}, {1, 2}), 0.5), std::invalid_argument);  // the round's weights exceed 1
  auto bounded = strategy->begin_aggregation(std::make_shared<ParameterSet>(global));
  EXPECT_THROW(bounded->add(next_client(), update({1, 2, 3, 40}, {1, 2}), 0.5), std::logic_error);  // |40| beyond max|global| + 10
}

TEST(FedAvg, ThreadedKernelMatchesSerial) {
  const size_t n = 3'000'001;
  std::vector<float> x(n);
  std::vector<int64_t> serial(n, 0), threaded(n, 0);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::sin(static_cast<double>(i)));
  const double scale = std::ldexp(1.0, 40);
  const float largest = accumulate_fixed_point(serial.data(), x.data(), n, 0.5 * scale, 1);
  EXPECT_EQ(largest, accumulate_fixed_point(threaded.data(), x.data(), n, 0.5 * scale, 2));
  EXPECT_EQ(largest, *std::max_element(x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }) < 0
                         ? -*std::max_element(x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); })
                         : *std::max_element(x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }));
  EXPECT_EQ(serial, threaded);
  EXPECT_NEAR(static_cast<double>(serial[12345]) / scale, 0.5 * x[12345], 1e-12);
}

TEST(FedProx, ConfigureSendsMuAndLocalSteps) {
  auto prox = make_strategy(spec_with(StrategyType::FedProx, 0.01), scratch());
  const RoundPlan plan = prox->configure_round(1, 1, {"a", "b", "c", "d"});
  EXPECT_DOUBLE_EQ(plan.proximal_mu, 0.01);
  EXPECT_EQ(plan.local_steps, 7);
  EXPECT_EQ(plan.clients.size(), 2u);
  auto avg = make_strategy(spec_with(StrategyType::FedAvg, 0), scratch());
  EXPECT_DOUBLE_EQ(avg->configure_round(1, 1, {"a", "b"}).proximal_mu, 0.0);
}

TEST(Selection, FractionWithMinimumDeterministicPerRoundAndAttempt) {
  const std::vector<std::string> ten = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  EXPECT_EQ(select_clients(ten, 0.3, 2, 1, 1, 1).size(), 3u);
  EXPECT_EQ(select_clients(ten, 0.1, 2, 1, 1, 1).size(), 2u);  // the minimum wins
  EXPECT_EQ(select_clients(ten, 1.0, 2, 1, 1, 1).size(), 10u);
  EXPECT_EQ(select_clients({"a"}, 1.0, 2, 1, 1, 1).size(), 1u);  // never more than available
  EXPECT_EQ(select_clients(ten, 0.3, 2, 1, 4, 1), select_clients(ten, 0.3, 2, 1, 4, 1));
  // Over rounds, every client gets picked; a retried round draws afresh.
  std::set<std::string> seen;
  for (int round = 1; round <= 30; ++round)
    for (const auto& c : select_clients(ten, 0.3, 2, 1, round, 1)) seen.insert(c);
  EXPECT_EQ(seen.size(), ten.size());
  bool attempt_differs = false;
  for (int round = 1; round <= 10; ++round)
    attempt_differs |= select_clients(ten, 0.3, 2, 1, round, 1) != select_clients(ten, 0.3, 2, 1, round, 2);
  EXPECT_TRUE(attempt_differs);
}

TEST(MuSchedule, ConstantStepAndAdaptive) {
  StrategySpec s;
  s.proximal_mu = 0.01;
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 25, {}), 0.01);
  s.mu_schedule = MuScheduleType::Step;
  s.mu_schedule_every_rounds = 10;
  s.mu_schedule_factor = 0.5;
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 1, {}), 0.01);
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 10, {}), 0.01);
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 11, {}), 0.005);
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 25, {}), 0.0025);
  s.mu_schedule = MuScheduleType::Adaptive;
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 5, {1.0, 0.9}), 0.01);             // fewer than 3 evaluations
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 5, {1.0, 0.9, 0.8}), 0.01);        // improving by 20%
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 5, {5.0, 1.0, 0.999, 0.995}), 0.008);  // stalled (<1%)
  EXPECT_DOUBLE_EQ(scheduled_mu(s, 5, {1.0, 1.0, 1.1}), 0.011);       // diverging (>5% worse)
}

TEST(MuSchedule, AdaptiveStrategyLearnsFromEvaluations) {
  FederationSpec spec = spec_with(StrategyType::FedProx, 0.01);
  spec.strategy.mu_schedule = MuScheduleType::Adaptive;
  auto strategy = make_strategy(spec, scratch());
  for (double loss : {1.0, 1.0, 1.1}) strategy->on_evaluation(0, loss);
  EXPECT_DOUBLE_EQ(strategy->configure_round(4, 1, {"a", "b"}).proximal_mu, 0.011);
  auto restored = make_strategy(spec, scratch());
  restored->restore(strategy->state(), strategy->state_tensors());  // what a checkpoint carries
  EXPECT_DOUBLE_EQ(restored->configure_round(4, 1, {"a", "b"}).proximal_mu, 0.011);
}
