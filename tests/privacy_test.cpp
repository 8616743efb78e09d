// Client-level differential privacy: the accountant against closed forms, the noise source's
// statistics, the private mean's arithmetic (clip, unweighted sum over m, noise) exactly, the
// mechanism's noise and clipping on large samples, adaptive clipping's direction, the budget, and
// the spec's refusals. The accountant against Opacus and dp_accounting: tests/privacy/.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/aggregation/rules.h"
#include "core/privacy/client_level.h"
#include "core/privacy/gaussian_noise.h"
#include "core/privacy/rdp_accountant.h"
#include "core/spec/federation_spec.h"
#include "support/test_support.h"

using namespace zk0;

namespace {

ParameterSet parameters(const std::vector<std::vector<float>>& tensors) {
  ParameterSet p;
  for (size_t t = 0; t < tensors.size(); ++t) {
    Tensor x = make_tensor("w" + std::to_string(t), DType::F32, {static_cast<int64_t>(tensors[t].size())});
    std::copy(tensors[t].begin(), tensors[t].end(), x.as<float>());
    p.tensors.push_back(std::move(x));
  }
  return p;
}

PrivacySpec fixed_clip(double c, double z, double q = 1.0) {
  PrivacySpec s;
  s.enabled = true;
  s.clip_norm = c;
  s.noise_multiplier = z;
  s.sampling_rate = q;
  s.delta = 1e-5;
  s.insecure_noise_seed = 11;
  return s;
}

std::string problems_of(const std::string& strategy_yaml, int clients = 4) {
  std::string yaml = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: p}\nspec:\n  rounds: 10\n"
                     "  partition: {clients: " + std::to_string(clients) + ", dataset: {synthetic: {task: t}}}\n"
                     "  evaluation: {dataset: {synthetic: {task: e}}}\n  strategy: " + strategy_yaml + "\n";
  return test::spec_problems(yaml);
}

}  // namespace

TEST(Accountant, FullParticipationIsTheGaussianMechanismsClosedForm) {
  // q = 1: RDP of the Gaussian mechanism is alpha / (2 z^2) per release, no series involved.
  const double z = 1.3, delta = 1e-6;
  const long rounds = 40;
  double best = INFINITY;
  for (double a : default_rdp_orders())
    best = std::min(best, rounds * a / (2 * z * z) - (std::log(delta) + std::log(a)) / (a - 1) + std::log((a - 1) / a));
  EXPECT_NEAR(epsilon_after(1.0, z, rounds, delta), best, 1e-12 * best);
}

TEST(Accountant, SubsamplingAmplifiesAndComposesMonotonically) {
  const double full = epsilon_after(1.0, 1.0, 30, 1e-5);
  const double sampled = epsilon_after(0.1, 1.0, 30, 1e-5);
  EXPECT_LT(sampled, full);
  EXPECT_LT(epsilon_after(0.1, 1.0, 10, 1e-5), sampled);
  EXPECT_LT(epsilon_after(0.1, 2.0, 30, 1e-5), sampled);
  // Integer and fractional orders come from different series: both are in the default orders and
  // must join smoothly (RDP is continuous in the order).
  const std::vector<double> around = {2.9, 3.0, 3.1};
  const std::vector<double> rdp = sampled_gaussian_rdp(0.05, 0.9, around);
  EXPECT_LT(rdp[0], rdp[1]);
  EXPECT_LT(rdp[1], rdp[2]);
  EXPECT_NEAR(rdp[1], 0.5 * (rdp[0] + rdp[2]), 0.05 * rdp[1]);
}

TEST(Accountant, CheckpointedStateGivesTheSameEpsilonAsAnUninterruptedRun) {
  RdpAccountant whole, first, resumed;
  whole.record(0.2, 1.1, 30);
  for (int i = 0; i < 12; ++i) first.record(0.2, 1.1);
  resumed.restore(nlohmann::json::parse(first.state().dump()));
  for (int i = 0; i < 18; ++i) resumed.record(0.2, 1.1);
  EXPECT_EQ(resumed.releases(), 30);
  EXPECT_NEAR(resumed.spent(1e-5).epsilon, whole.spent(1e-5).epsilon, 1e-12);
}

TEST(Accountant, NoiseSearchFindsTheLeastMultiplierWithinTheTarget) {
  const double z = noise_multiplier_for(3.0, 1e-5, 0.1, 100);
  EXPECT_LE(epsilon_after(0.1, z, 100, 1e-5), 3.0);
  EXPECT_GT(epsilon_after(0.1, z * (1 - 1e-4), 100, 1e-5), 3.0);
  EXPECT_THROW(noise_multiplier_for(1e-9, 1e-5, 1.0, 100, 50), std::invalid_argument);
}

TEST(GaussianNoise, DrawsAreStandardNormalOnLargeSamples) {
  const GaussianNoise noise = GaussianNoise::from_seed(5);
  const size_t n = 2'000'000;
  std::vector<float> x(n, 0.0f);
  noise.add(x.data(), n, 1.0, 3, 0, 2);
  double sum = 0, sq = 0, fourth = 0;
  size_t beyond3 = 0;
  for (float v : x) {
    sum += v;
    sq += double(v) * v;
    fourth += double(v) * v * v * v;
    beyond3 += std::fabs(v) > 3;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  EXPECT_LT(std::fabs(mean), 5 / std::sqrt(double(n)));
  EXPECT_NEAR(std::sqrt(var), 1.0, 5 / std::sqrt(2.0 * n));
  EXPECT_NEAR(fourth / n / (var * var), 3.0, 0.03);  // kurtosis of a normal
  const double p3 = 0.0026997960632601866;          // P(|N(0,1)| > 3)
  EXPECT_NEAR(double(beyond3) / n, p3, 5 * std::sqrt(p3 / n));
}

TEST(GaussianNoise, ReproducibleBySeedIndependentOfThreadsAndDistinctPerStream) {
  const GaussianNoise a = GaussianNoise::from_seed(9), b = GaussianNoise::from_seed(9), c = GaussianNoise::from_seed(10);
  std::vector<float> one(100'003, 0.0f), four(100'003, 0.0f), other(100'003, 0.0f);
  a.add(one.data(), one.size(), 2.0, 1, 4, 1);
  b.add(four.data(), four.size(), 2.0, 1, 4, 4);
  c.add(other.data(), other.size(), 2.0, 1, 4, 1);
  EXPECT_EQ(one, four);
  EXPECT_NE(one, other);
  EXPECT_FLOAT_EQ(one[100'002], static_cast<float>(2.0 * a.draw(1, 4, 100'002)));
  EXPECT_NE(a.draw(1, 4, 7), a.draw(2, 4, 7));
  EXPECT_NE(a.draw(1, 4, 7), a.draw(1, 5, 7));
  // From the operating system: two sources never agree.
  EXPECT_NE(GaussianNoise::from_os().draw(0, 0, 0), GaussianNoise::from_os().draw(0, 0, 0));
}

TEST(PrivateMean, ClipsSumsUnweightedDividesByExpectedCountAndAddsTheNoise) {
  const auto global = std::make_shared<const ParameterSet>(parameters({{1, 2, 3}, {0, 0}}));
  const GaussianNoise noise = GaussianNoise::from_seed(3);
  auto round = std::make_shared<PrivateRound>();
  round->clip_norm = 1.0;
  round->expected_clients = 4;  // q x population: one of the four sampled did not send
  round->noise_stddev = 0.01;
  round->stream = 77;
  round->noise = &noise;
  auto agg = make_private_mean(global, round);
  // a: delta norm 0.5 (kept); b: norm 5 (clipped to 1); c: norm 1 exactly (kept). Weights are ignored.
  agg->add("b", parameters({{1 + 3, 2 + 4, 3}, {0, 0}}), 0.7);
  agg->add("a", parameters({{1.3f, 2, 3}, {0.4f, 0}}), 0.1);
  agg->add("c", parameters({{1, 2, 3}, {0, -1}}), 0.2);
  EXPECT_THROW(agg->add("c", parameters({{1, 2, 3}, {0, 0}}), 0.1), std::invalid_argument);
  const AggregationResult r = agg->finish();
  const std::vector<std::vector<double>> delta_sum = {{0.3 + 0.6, 0.8, 0}, {0.4, -1}};
  for (size_t t = 0; t < 2; ++t)
    for (size_t i = 0; i < delta_sum[t].size(); ++i)
      EXPECT_NEAR(r.parameters.tensors[t].as<float>()[i],
                  global->tensors[t].as<float>()[i] + delta_sum[t][i] / 4 + 0.01 * noise.draw(77, t, i), 1e-6)
          << t << "," << i;
  ASSERT_EQ(r.decisions.size(), 3u);
  EXPECT_EQ(r.decisions[0].outcome, "accepted");
  EXPECT_EQ(r.decisions[1].outcome, "clipped");
  EXPECT_NEAR(r.decisions[1].scale, 0.2, 1e-12);
  EXPECT_EQ(r.decisions[2].outcome, "accepted");
  EXPECT_EQ(round->updates, 3u);
  EXPECT_EQ(round->unclipped, 2u);
  EXPECT_TRUE(round->aggregated);
}

TEST(PrivateMean, WorkerClippingIsCheckedAndAnEmptyRoundReleasesNoiseAlone) {
  const auto global = std::make_shared<const ParameterSet>(parameters({{0, 0, 0, 0}}));
  const GaussianNoise noise = GaussianNoise::from_seed(4);
  auto round = std::make_shared<PrivateRound>();
  round->clip_norm = 1.0;
  round->clip_on = ClipLocation::Worker;
  round->expected_clients = 2;
  round->noise_stddev = 0.5;
  round->noise = &noise;
  auto agg = make_private_mean(global, round);
  ASSERT_TRUE(agg->accepted_norm_limit());
  EXPECT_NEAR(*agg->accepted_norm_limit(), 1.0, 1e-4);
  EXPECT_THROW(agg->add("long", parameters({{2, 0, 0, 0}}), 0.5), std::invalid_argument);
  agg->note_reported_norm("clipped-by-worker", 3.0);
  agg->add("clipped-by-worker", parameters({{0.6f, 0.8f, 0, 0}}), 0.5);
  EXPECT_EQ(agg->finish().decisions.at(0).outcome, "clipped");  // the worker's own norm said so

  auto empty_round = std::make_shared<PrivateRound>(*round);
  empty_round->aggregated = false;
  const AggregationResult r = make_private_mean(global, empty_round)->finish();
  EXPECT_TRUE(r.decisions.empty());
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r.parameters.tensors[0].as<float>()[i], 0.5 * noise.draw(0, 0, i), 1e-6);
}

TEST(PrivateMean, TheMechanismsNoiseHasStdZCOverMAndNoUpdateMovesTheMeanByMoreThanCOverM) {
  // The sensitivity: with the noise off, one client's arbitrarily long update moves the result by
  // exactly C/m in L2. With it on, on a large sample the result's spread is z C / m.
  const size_t n = 1'000'000;
  const auto global = std::make_shared<const ParameterSet>(parameters({std::vector<float>(n, 0.25f)}));
  const GaussianNoise noise = GaussianNoise::from_seed(8);
  const double c = 0.5, z = 1.3, m = 4;
  for (const double stddev : {0.0, z * c / m}) {
    auto round = std::make_shared<PrivateRound>();
    round->clip_norm = c;
    round->expected_clients = m;
    round->noise_stddev = stddev;
    round->noise = &noise;
    auto agg = make_private_mean(global, round);
    std::vector<float> huge(n, 0.25f);
    huge[0] = 1e3f;
    huge[1] = -1e3f;
    if (stddev == 0) agg->add("attacker", parameters({huge}), 1.0);
    const ParameterSet out = agg->finish().parameters;
    double sq = 0, sum = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = out.tensors[0].as<float>()[i] - 0.25;
      sq += d * d;
      sum += d;
    }
    if (stddev == 0) {
      EXPECT_NEAR(std::sqrt(sq), c / m, 1e-6);
    } else {
      const double mean = sum / n;
      EXPECT_NEAR(std::sqrt(sq / n - mean * mean), z * c / m, 5 * (z * c / m) / std::sqrt(2.0 * n));
    }
  }
}

TEST(ClientLevelPrivacy, AdaptiveClippingGrowsWhenEveryUpdateIsClippedAndShrinksWhenNoneIs) {
  PrivacySpec spec = fixed_clip(0, 0.5);
  spec.clip_norm = 0;
  spec.adaptive = {true, 1.0, 0.5, 0.2, 1.0};
  ClientLevelPrivacy privacy(spec, 10);
  std::vector<std::string> clients;
  for (int i = 0; i < 20; ++i) clients.push_back("c" + std::to_string(i));
  const auto global = std::make_shared<const ParameterSet>(parameters({{0, 0}}));
  const auto run_round = [&](int round, float update_norm) {
    EXPECT_EQ(privacy.sample(clients, round, 1).size(), clients.size());  // q = 1
    auto agg = make_private_mean(global, privacy.begin_round());
    for (const auto& c : clients) agg->add(c, parameters({{update_norm, 0}}), 0.05);
    agg->finish();
    const double before = privacy.clip_norm();
    privacy.commit();
    return privacy.clip_norm() / before;
  };
  EXPECT_GT(run_round(1, 100.0f), 1.05);  // every update clipped: C grows
  EXPECT_LT(run_round(2, 1e-4f), 0.95);   // none clipped: C shrinks
  EXPECT_EQ(privacy.report()["releases"], 2);
  // The count's release spends part of the budget z stands for: the update needs more noise than z.
  EXPECT_GT(update_noise_multiplier(spec, 0.5), 0.5);
  EXPECT_NEAR(update_noise_multiplier(spec, 0.5), 1 / std::sqrt(1 / 0.25 - 1 / 4.0), 1e-12);
}

TEST(ClientLevelPrivacy, PoissonSamplingTakesEachClientWithProbabilityQ) {
  ClientLevelPrivacy privacy(fixed_clip(1.0, 1.0, 0.3), 10);
  std::vector<std::string> clients;
  for (int i = 0; i < 1000; ++i) clients.push_back("c" + std::to_string(i));
  size_t taken = 0;
  for (int round = 1; round <= 20; ++round) taken += privacy.sample(clients, round, 1).size();
  const double n = 20000, p = 0.3;
  EXPECT_NEAR(taken / n, p, 5 * std::sqrt(p * (1 - p) / n));
  EXPECT_NE(privacy.sample(clients, 1, 1), privacy.sample(clients, 1, 2));
}

TEST(ClientLevelPrivacy, NoRoundStartsThatWouldTakeEpsilonPastTheTarget) {
  PrivacySpec spec = fixed_clip(1.0, 1.0);
  spec.target_epsilon = 4.0;
  ClientLevelPrivacy privacy(spec, 100);
  const auto global = std::make_shared<const ParameterSet>(parameters({{0}}));
  int rounds = 0;
  while (privacy.budget_exhausted().empty()) {
    privacy.sample({"a"}, ++rounds, 1);
    make_private_mean(global, privacy.begin_round())->finish();
    privacy.commit();
    ASSERT_LE(privacy.epsilon(), 4.0);
    ASSERT_LT(rounds, 100);
  }
  EXPECT_GT(epsilon_after(1.0, 1.0, rounds + 1, 1e-5), 4.0);
  EXPECT_NE(privacy.budget_exhausted().find("targetEpsilon"), std::string::npos);
  // A resumed run continues with the same z and accountant.
  ClientLevelPrivacy resumed(spec, 100);
  resumed.restore(privacy.state());
  EXPECT_EQ(resumed.epsilon(), privacy.epsilon());
  EXPECT_FALSE(resumed.budget_exhausted().empty());
}

TEST(PrivacySpec, ImpossibleSettingsAreRefusedWithTheFieldNamed) {
  EXPECT_EQ(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}}"), "");
  EXPECT_NE(problems_of("{privacy: {clipNorm: 0, noiseMultiplier: 1, delta: 1.0e-5}}").find("spec.strategy.privacy.clipNorm"), std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: -1, delta: 1.0e-5}}").find("spec.strategy.privacy.noiseMultiplier"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 0.3}}").find("spec.strategy.privacy.delta: must be below 1/n"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1}}").find("spec.strategy.privacy.delta: is required"), std::string::npos);
  // Adaptive clipping among 4 clients leaves the update no noise budget for epsilon 1.
  EXPECT_NE(problems_of("{privacy: {adaptiveClipping: {}, targetEpsilon: 1, delta: 1.0e-5}}").find("spec.strategy.privacy.targetEpsilon"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}, aggregation: {rule: median}}")
                .find("spec.strategy.aggregation.rule"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}, minFitClients: 2}").find("spec.strategy.minFitClients"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}, fractionFit: 0.5}").find("spec.strategy.fractionFit"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, adaptiveClipping: {}, noiseMultiplier: 1, delta: 1.0e-5}}")
                .find("set exactly one of clipNorm or adaptiveClipping"),
            std::string::npos);
  EXPECT_NE(problems_of("{privacy: {clipNorm: 1, delta: 1.0e-5}}").find("set noiseMultiplier, targetEpsilon or both"), std::string::npos);
  // A target a hundred clients can afford.
  EXPECT_EQ(problems_of("{privacy: {adaptiveClipping: {}, samplingRate: 0.5, targetEpsilon: 3, delta: 1.0e-5}}", 100), "");
}
