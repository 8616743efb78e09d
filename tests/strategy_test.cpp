// Server-side strategy: FedAvg maths, client selection and the FedProx mu schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "aggregator/strategy.h"

using namespace zk0;

namespace {

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

TEST(FedAvg, WeightsUpdatesBySamplesTrained) {
  auto strategy = make_strategy(spec_with(StrategyType::FedAvg, 0));
  const ParameterSet global = update({0, 0, 0, 0}, {0, 0});
  auto agg = strategy->begin_aggregation(global);
  agg->add(update({1, 2, 3, 4}, {10, 20}), 64);   // client with 64 samples
  agg->add(update({5, 6, 7, 8}, {-10, 0}), 192);  // client with 192 samples
  const ParameterSet out = agg->finish();
  // (64 * a + 192 * b) / 256 = 0.25 a + 0.75 b
  const float expected_w[] = {4, 5, 6, 7}, expected_b[] = {-5, 5};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(out.tensors[0].as<float>()[i], expected_w[i]);
  for (int i = 0; i < 2; ++i) EXPECT_FLOAT_EQ(out.tensors[1].as<float>()[i], expected_b[i]);
  EXPECT_EQ(out.tensors[0].name, "w");
}

TEST(FedAvg, RejectsMismatchedLayoutAndBadWeights) {
  auto strategy = make_strategy(spec_with(StrategyType::FedAvg, 0));
  auto agg = strategy->begin_aggregation(update({0, 0, 0, 0}, {0, 0}));
  ParameterSet wrong = update({1, 2, 3, 4}, {1, 2});
  wrong.tensors[1].name = "bias";
  EXPECT_THROW(agg->add(wrong, 1), std::invalid_argument);
  EXPECT_THROW(agg->add(update({1, 2, 3, 4}, {1, 2}), 0), std::invalid_argument);
  EXPECT_THROW(agg->finish(), std::logic_error);
}

TEST(FedAvg, ThreadedKernelMatchesSerial) {
  const size_t n = 3'000'001;
  std::vector<float> x(n), acc_serial(n), acc_threaded(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::sin(static_cast<double>(i)));
  weighted_accumulate(acc_serial.data(), x.data(), n, 0.5f, true, 1);
  weighted_accumulate(acc_serial.data(), x.data(), n, 2.0f, false, 1);
  weighted_accumulate(acc_threaded.data(), x.data(), n, 0.5f, true, 2);
  weighted_accumulate(acc_threaded.data(), x.data(), n, 2.0f, false, 2);
  EXPECT_EQ(acc_serial, acc_threaded);
  EXPECT_FLOAT_EQ(acc_serial[12345], 2.5f * x[12345]);
}

TEST(FedProx, ConfigureSendsMuAndLocalSteps) {
  auto prox = make_strategy(spec_with(StrategyType::FedProx, 0.01));
  const RoundPlan plan = prox->configure_round(1, 1, {"a", "b", "c", "d"});
  EXPECT_DOUBLE_EQ(plan.proximal_mu, 0.01);
  EXPECT_EQ(plan.local_steps, 7);
  EXPECT_EQ(plan.clients.size(), 2u);
  auto avg = make_strategy(spec_with(StrategyType::FedAvg, 0));
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
  auto strategy = make_strategy(spec);
  for (double loss : {1.0, 1.0, 1.1}) strategy->on_evaluation(0, loss);
  EXPECT_DOUBLE_EQ(strategy->configure_round(4, 1, {"a", "b"}).proximal_mu, 0.011);
  auto restored = make_strategy(spec);
  restored->restore(strategy->state());  // what a checkpoint carries
  EXPECT_DOUBLE_EQ(restored->configure_round(4, 1, {"a", "b"}).proximal_mu, 0.011);
}
