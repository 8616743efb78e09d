// The aggregation rules against values computed by hand: median, trimmed mean, Krum, Multi-Krum,
// Bulyan and norm bounding, at the smallest n each allows, with ties and weights; and what holds
// at any size: one block or many, any arrival order, the scratch folder gone afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "core/aggregation/buffered.h"
#include "core/aggregation/deltas.h"
#include "core/aggregation/rules.h"
#include "core/aggregation/server_optimizer.h"
#include "core/aggregation/strategy.h"
#include "support/test_support.h"

using namespace zk0;
using zk0::test::point;

namespace {

std::string scratch() { return testing::TempDir() + "zk0-rules-scratch"; }

StrategySpec rule(AggregationRule r, int f = 0, int select = 0, double trim = 0) {
  StrategySpec s;
  s.aggregation.rule = r;
  s.aggregation.byzantine = f;
  s.aggregation.select = select;
  s.aggregation.trim_fraction = trim;
  return s;
}

struct Round {
  AggregationResult result;
  std::vector<float> values() const {
    const Tensor& t = result.parameters.tensors.at(0);
    return {t.as<float>(), t.as<float>() + t.numel()};
  }
  const UpdateDecision& decision(const std::string& client) const {
    for (const auto& d : result.decisions)
      if (d.client == client) return d;
    throw std::out_of_range(client);
  }
};

// One update per client, named c0, c1, ... in order; equal weights unless given.
Round aggregate(const StrategySpec& spec, const std::vector<float>& global, const std::vector<std::vector<float>>& updates,
                std::vector<double> weights = {}) {
  if (weights.empty()) weights.assign(updates.size(), 1.0 / static_cast<double>(updates.size()));
  auto agg = make_aggregation(spec, std::make_shared<ParameterSet>(point(global)), scratch());
  for (size_t i = 0; i < updates.size(); ++i) agg->add("c" + std::to_string(i), point(updates[i]), weights[i]);
  return {agg->finish()};
}

std::vector<std::vector<float>> column(const std::vector<float>& values) {
  std::vector<std::vector<float>> u;
  for (float v : values) u.push_back({v});
  return u;
}

}  // namespace

TEST(Median, OddEvenTiesAndAGlobalToBeDeltasFrom) {
  // Per coordinate: [1 2 3 4 100] -> 3 and [-5 0 0 7 1] -> 0 (a tie in the middle).
  Round r = aggregate(rule(AggregationRule::Median), {0, 0}, {{1, -5}, {2, 0}, {3, 0}, {4, 7}, {100, 1}});
  EXPECT_EQ(r.values(), (std::vector<float>{3, 0}));
  // Even n: the mean of the two middle values, [1 2 3 10] -> 2.5.
  EXPECT_EQ(aggregate(rule(AggregationRule::Median), {0}, column({10, 1, 3, 2})).values(), std::vector<float>{2.5f});
  // Deltas from a global of 10: the result is 10 + median(delta) = 13, whatever the weights say.
  r = aggregate(rule(AggregationRule::Median), {10}, column({11, 12, 13, 14, 110}), {0.05, 0.05, 0.05, 0.05, 0.8});
  EXPECT_EQ(r.values(), std::vector<float>{13});
  for (const auto& d : r.result.decisions) EXPECT_EQ(d.outcome, "accepted");
  // One update: itself.
  EXPECT_EQ(aggregate(rule(AggregationRule::Median), {1}, column({4})).values(), std::vector<float>{4});
}

TEST(TrimmedMean, TrimsFloorOfTheFractionFromEachTailAndRefusesToTrimNothing) {
  // n = 5, fraction 0.2: one from each tail. [1 2 3 4 100] -> 3; [-5 0 0 1 7] -> 1/3.
  Round r = aggregate(rule(AggregationRule::TrimmedMean, 0, 0, 0.2), {0, 0}, {{1, -5}, {2, 0}, {3, 0}, {4, 7}, {100, 1}});
  EXPECT_FLOAT_EQ(r.values()[0], 3.0f);
  EXPECT_FLOAT_EQ(r.values()[1], 1.0f / 3);
  // n = 4 is the least that fraction 0.25 trims at: [1 2 3 10] -> 2.5; weights are ignored.
  r = aggregate(rule(AggregationRule::TrimmedMean, 0, 0, 0.25), {0}, column({10, 1, 3, 2}), {0.7, 0.1, 0.1, 0.1});
  EXPECT_FLOAT_EQ(r.values()[0], 2.5f);
  // n = 3 would trim floor(0.75) = 0: refused, never a silent plain mean.
  try {
    aggregate(rule(AggregationRule::TrimmedMean, 0, 0, 0.25), {0}, column({1, 2, 3}));
    FAIL() << "three updates with fraction 0.25 trim nothing";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("trimmedMean needs at least 4 updates, got 3"), std::string::npos) << e.what();
  }
}

TEST(Krum, ScoresBySquaredDistancesToTheNMinusFMinus2NearestAndBreaksTiesByName) {
  // n = 5, f = 1 (the least n Krum allows is 2f + 3 = 5): each score sums the 2 nearest.
  // Points 0 1 2 3 100: scores 5, 2, 2, 5, 9409 + 9604 = 19013. c1 and c2 tie; c1 sorts first.
  const std::vector<std::vector<float>> updates = column({0, 1, 2, 3, 100});
  const std::vector<double> weights = {0.1, 0.2, 0.3, 0.2, 0.2};
  Round r = aggregate(rule(AggregationRule::Krum, 1), {0}, updates, weights);
  EXPECT_EQ(r.values(), std::vector<float>{1});
  EXPECT_EQ(r.decision("c1").outcome, "accepted");
  for (const char* c : {"c0", "c2", "c3", "c4"}) EXPECT_EQ(r.decision(c).outcome, "discarded") << c;
  EXPECT_NE(r.decision("c4").reason.find("score 19013 not among the 1 lowest (the highest kept: 2)"), std::string::npos)
      << r.decision("c4").reason;
  // Multi-Krum, m = 3: c1, c2, then c0 and c3 tie at 5 and c0 sorts first. The selected are
  // averaged with their weights renormalised: (0 * 0.1 + 1 * 0.2 + 2 * 0.3) / 0.6.
  r = aggregate(rule(AggregationRule::MultiKrum, 1, 3), {0}, updates, weights);
  EXPECT_FLOAT_EQ(r.values()[0], 0.8f / 0.6f);
  for (const char* c : {"c0", "c1", "c2"}) EXPECT_EQ(r.decision(c).outcome, "accepted") << c;
  for (const char* c : {"c3", "c4"}) EXPECT_EQ(r.decision(c).outcome, "discarded") << c;
  // Four updates with f = 1 are fewer than 2f + 3.
  EXPECT_THROW(aggregate(rule(AggregationRule::Krum, 1), {0}, column({0, 1, 2, 3})), std::invalid_argument);
}

TEST(Bulyan, IteratedKrumSelectsNMinus2FThenAveragesTheBetaNearestTheMedian) {
  // n = 7 = 4f + 3 with f = 1: theta = 5 selected, beta = 3 averaged per coordinate. The two
  // outliers are never selected; of 0 1 2 2.1 2.2 the median is 2 and its 3 nearest are 2, 2.1
  // and 2.2 (not the middle three 1, 2, 2.1): (2 + 2.1 + 2.2) / 3 = 2.1.
  Round r = aggregate(rule(AggregationRule::Bulyan, 1), {0}, column({0, 1, 2, 2.1f, 2.2f, 50, -60}));
  EXPECT_NEAR(r.values()[0], 2.1, 1e-6);
  for (const char* c : {"c0", "c1", "c2", "c3", "c4"}) EXPECT_EQ(r.decision(c).outcome, "accepted") << c;
  for (const char* c : {"c5", "c6"}) {
    EXPECT_EQ(r.decision(c).outcome, "discarded") << c;
    EXPECT_NE(r.decision(c).reason.find("bulyan: not among the 5"), std::string::npos) << r.decision(c).reason;
  }
  // f = 0: every update selected, beta = n: the plain coordinate-wise mean.
  EXPECT_FLOAT_EQ(aggregate(rule(AggregationRule::Bulyan, 0), {0}, column({1, 2, 6})).values()[0], 3.0f);
  EXPECT_THROW(aggregate(rule(AggregationRule::Bulyan, 1), {0}, column({0, 1, 2, 3, 4, 5})), std::invalid_argument);
}

TEST(NormBounding, FixedNormScalesLongDeltasAndComposesWithTheMean) {
  StrategySpec spec = rule(AggregationRule::Mean);
  spec.clipping.norm = 2.5;
  // (3, 4) has norm 5: scaled by 0.5 to (1.5, 2); (0, 1) stays. Mean: (0.75, 1.5).
  Round r = aggregate(spec, {0, 0}, {{3, 4}, {0, 1}});
  EXPECT_FLOAT_EQ(r.values()[0], 0.75f);
  EXPECT_FLOAT_EQ(r.values()[1], 1.5f);
  EXPECT_EQ(r.decision("c0").outcome, "clipped");
  EXPECT_DOUBLE_EQ(r.decision("c0").scale, 0.5);
  EXPECT_DOUBLE_EQ(r.decision("c0").norm, 5.0);
  EXPECT_EQ(r.decision("c1").outcome, "accepted");
  ASSERT_TRUE(r.result.clip_norm);
  EXPECT_DOUBLE_EQ(*r.result.clip_norm, 2.5);
}

// Leave-one-out scores under the mean take the aggregate without a client from the aggregate and
// that client's update (core/aggregation/deltas.h): the mean of the others, clipped or not.
TEST(NormBounding, TheMeanWithoutOneUpdateFollowsFromTheMeanAndThatUpdate) {
  const std::vector<float> global = {1, -1};
  const std::vector<std::vector<float>> updates = {{4, 3}, {1, 0}, {-2, 2}};
  const std::vector<double> weights = {0.5, 0.3, 0.2};
  for (const double clip : {0.0, 2.5}) {
    SCOPED_TRACE(clip);
    StrategySpec spec = rule(AggregationRule::Mean);
    spec.clipping.norm = clip;
    const Round all = aggregate(spec, global, updates, weights);
    for (size_t out = 0; out < updates.size(); ++out) {
      std::vector<std::vector<float>> others;
      std::vector<double> other_weights;
      for (size_t i = 0; i < updates.size(); ++i)
        if (i != out) others.push_back(updates[i]), other_weights.push_back(weights[i]);
      const Round rest = aggregate(spec, global, others, other_weights);
      const ParameterSet without = mean_without(all.result.parameters, 1.0, point(global), point(updates[out]), weights[out],
                                                all.decision("c" + std::to_string(out)).scale);
      for (size_t k = 0; k < 2; ++k) EXPECT_NEAR(without.tensors[0].as<float>()[k], rest.values()[k], 1e-5) << out;
    }
  }
  EXPECT_THROW(mean_without(point({1}), 0.5, point({0}), point({1}), 0.5, 1), std::invalid_argument);
}

TEST(NormBounding, AtAQuantileOfTheRoundsNormsAndComposedWithTheMedian) {
  StrategySpec spec = rule(AggregationRule::Median);
  spec.clipping.quantile = 0.5;
  // Norms 1, 5, 10: the median's nearest rank is 5, so (6, 8) becomes (3, 4). Then per
  // coordinate [1 0 3] -> 1 and [0 5 4] -> 4.
  Round r = aggregate(spec, {0, 0}, {{1, 0}, {0, 5}, {6, 8}});
  EXPECT_EQ(r.values(), (std::vector<float>{1, 4}));
  EXPECT_DOUBLE_EQ(*r.result.clip_norm, 5.0);
  EXPECT_EQ(r.decision("c2").outcome, "clipped");
  EXPECT_EQ(r.decision("c1").outcome, "accepted");
  // The quantile 1 clips nothing.
  spec.clipping.quantile = 1;
  r = aggregate(spec, {0, 0}, {{1, 0}, {0, 5}, {6, 8}});
  for (const auto& d : r.result.decisions) EXPECT_EQ(d.outcome, "accepted");
  EXPECT_EQ(r.values(), (std::vector<float>{1, 5}));
}

TEST(RobustRules, ManyBlocksAnyArrivalOrderSameBitsAndTheScratchFolderIsRemoved) {
  // 3 tensors, 10007 coordinates in all, through blocks of 1000: results equal a direct
  // computation and do not depend on the order updates arrive in.
  set_block_budget_bytes(1000 * sizeof(float) * 8);  // 7 members + 1 buffer
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0, 1);
  ParameterSet global;
  for (auto [name, n] : {std::pair<const char*, int64_t>{"a", 4000}, {"b", 3}, {"c", 6004}}) {
    Tensor t = make_tensor(name, DType::F32, {n});
    for (int64_t i = 0; i < n; ++i) t.as<float>()[i] = noise(rng);
    global.tensors.push_back(std::move(t));
  }
  std::vector<ParameterSet> updates(7, global);
  for (auto& u : updates)
    for (auto& t : u.tensors)
      for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] += 0.1f * noise(rng);
  const std::vector<double> weights = {0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1};
  for (AggregationRule r : {AggregationRule::Median, AggregationRule::TrimmedMean, AggregationRule::MultiKrum, AggregationRule::Bulyan}) {
    StrategySpec spec = rule(r, 1, 3, 0.2);
    spec.clipping.quantile = 0.6;
    std::vector<std::vector<float>> results;
    std::vector<int> order(7);
    std::iota(order.begin(), order.end(), 0);
    for (int trial = 0; trial < 3; ++trial) {
      auto agg = make_aggregation(spec, std::make_shared<ParameterSet>(global), scratch());
      for (int k : order) agg->add("c" + std::to_string(k), updates[static_cast<size_t>(k)], weights[static_cast<size_t>(k)]);
      EXPECT_EQ(std::distance(std::filesystem::directory_iterator(scratch()), {}), 1) << "one folder for the round in progress";
      const AggregationResult result = agg->finish();
      std::vector<float> flat;
      for (const auto& t : result.parameters.tensors) flat.insert(flat.end(), t.as<float>(), t.as<float>() + t.numel());
      results.push_back(flat);
      std::shuffle(order.begin(), order.end(), rng);
    }
    for (const auto& res : results) EXPECT_EQ(res, results[0]) << to_string(r);
    if (r == AggregationRule::Median) {
      // The median of the clipped deltas, by brute force, at a coordinate of each tensor.
      std::vector<double> norms;
      for (const auto& u : updates) {
        double s = 0;
        for (size_t t = 0; t < u.tensors.size(); ++t)
          for (int64_t i = 0; i < u.tensors[t].numel(); ++i) {
            const double d = static_cast<double>(u.tensors[t].as<float>()[i]) - global.tensors[t].as<float>()[i];
            s += d * d;
          }
        norms.push_back(std::sqrt(s));
      }
      std::vector<double> sorted = norms;
      std::sort(sorted.begin(), sorted.end());
      const double clip = sorted[static_cast<size_t>(std::ceil(0.6 * 7)) - 1];
      for (auto [t, i, flat] : {std::tuple<size_t, int64_t, size_t>{0, 3999, 3999}, {1, 1, 4001}, {2, 6003, 10006}}) {
        std::vector<float> v;
        for (size_t k = 0; k < 7; ++k) {
          const float d = updates[k].tensors[t].as<float>()[i] - global.tensors[t].as<float>()[i];
          v.push_back(norms[k] > clip ? d * static_cast<float>(clip / norms[k]) : d);
        }
        std::nth_element(v.begin(), v.begin() + 3, v.end());
        EXPECT_FLOAT_EQ(results[0][flat], global.tensors[t].as<float>()[i] + v[3]) << "tensor " << t << " coordinate " << i;
      }
    }
  }
  set_block_budget_bytes(size_t{256} << 20);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(scratch()), {}), 0) << "every round's folder removed";
}

TEST(RobustRules, RefuseASecondUpdateFromAClientAndAForeignLayout) {
  auto agg = make_aggregation(rule(AggregationRule::Median), std::make_shared<ParameterSet>(point({0, 0})), scratch());
  agg->add("a", point({1, 1}), 0.5);
  EXPECT_THROW(agg->add("a", point({2, 2}), 0.25), std::invalid_argument);
  EXPECT_THROW(agg->add("b", point({1, 2, 3}), 0.25), std::invalid_argument);
  EXPECT_THROW(agg->add("b", point({1, 2}), 0.75), std::invalid_argument);  // the round's weights would exceed 1
  EXPECT_EQ(agg->count(), 1u);
}

namespace {

std::vector<float> server_step(ServerOptimizer& o, float global, float aggregate) {
  const ParameterSet out = o.step(point({global}), point({aggregate}));
  return {out.tensors[0].as<float>()[0]};
}

ServerOptimizerSpec optimizer(ServerOptimizerType type, double lr) {
  ServerOptimizerSpec s;
  s.type = type;
  s.learning_rate = lr;
  return s;
}

}  // namespace

TEST(ServerOptimizer, EachMethodsFirstStepsByHand) {
  // The pseudo-gradient is aggregate - global = 1 in every first step below.
  ServerOptimizerSpec avgm = optimizer(ServerOptimizerType::AvgM, 1.0);
  avgm.momentum = 0.9;
  ServerOptimizer m(avgm);
  EXPECT_FLOAT_EQ(server_step(m, 0, 1)[0], 1.0f);  // m = 1
  EXPECT_FLOAT_EQ(server_step(m, 1, 2)[0], 2.9f);  // m = 0.9 + 1
  // FedAdam: m = 0.1, v = 0.01, eta * sqrt(1 - 0.99) / (1 - 0.9) = eta: 0.1 * 0.1 / (0.1 + 0.001).
  ServerOptimizer adam(optimizer(ServerOptimizerType::Adam, 0.1));
  // (The moments are float32, as the parameters: agreement to float32 rounding of 1 - beta.)
  EXPECT_NEAR(server_step(adam, 0, 1)[0], 0.1 * 0.1 / 0.101, 1e-7);
  // FedYogi: v = 0 - 0.01 * 1 * sign(0 - 1) = 0.01, no bias correction: 0.01 * 0.1 / 0.101.
  ServerOptimizer yogi(optimizer(ServerOptimizerType::Yogi, 0.01));
  EXPECT_NEAR(server_step(yogi, 0, 1)[0], 0.01 * 0.1 / 0.101, 1e-8);
  // FedAdagrad: v = 1: 0.1 * 1 / (1 + 0.001).
  ServerOptimizer adagrad(optimizer(ServerOptimizerType::Adagrad, 0.1));
  EXPECT_FLOAT_EQ(server_step(adagrad, 0, 1)[0], 0.1f / 1.001f);
  // None: the aggregate as it is.
  ServerOptimizer none(ServerOptimizerSpec{});
  EXPECT_EQ(server_step(none, 0, 7)[0], 7.0f);
  EXPECT_TRUE(none.moments().tensors.empty());
}

TEST(ServerOptimizer, ARestoredOptimizerContinuesBitForBit) {
  for (ServerOptimizerType type : {ServerOptimizerType::AvgM, ServerOptimizerType::Adam, ServerOptimizerType::Yogi, ServerOptimizerType::Adagrad}) {
    ServerOptimizer a(optimizer(type, 0.1));
    server_step(a, 0, 0.3f);
    server_step(a, 0.1f, -0.2f);
    ServerOptimizer b(optimizer(type, 0.1));
    b.restore(a.state(), a.moments());  // what the checkpoint carries
    EXPECT_EQ(server_step(b, 0.05f, 0.4f), server_step(a, 0.05f, 0.4f)) << to_string(type);
  }
  // A checkpoint whose moments do not fit the model is refused, naming the tensor.
  ServerOptimizer a(optimizer(ServerOptimizerType::Adam, 0.1));
  server_step(a, 0, 1);
  ServerOptimizer b(optimizer(ServerOptimizerType::Adam, 0.1));
  b.restore(a.state(), a.moments());
  try {
    b.step(point({0, 0}), point({1, 1}));
    FAIL() << "moments of shape [1] accepted for [2]";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'m/w' [2]"), std::string::npos) << e.what();
  }
  ServerOptimizer c(optimizer(ServerOptimizerType::Adam, 0.1));
  EXPECT_THROW(c.restore(a.state(), ParameterSet()), std::invalid_argument);  // steps taken, moments missing
}

TEST(RobustRules, MedianAndTrimmedMeanAgreeWithSortingAboveAndBelow64Members) {
  // Both kernels (ranks up to 64 members, sorting above) against a sort by hand, with ties.
  for (size_t n : {size_t{9}, size_t{64}, size_t{70}}) {
    std::mt19937 rng(static_cast<unsigned>(n));
    std::uniform_int_distribution<int> value(-20, 20);  // small integers: many ties
    std::vector<std::vector<float>> updates(n, std::vector<float>(300));
    for (auto& u : updates)
      for (auto& x : u) x = static_cast<float>(value(rng)) / 4;
    const std::vector<double> weights(n, 1.0 / static_cast<double>(n));
    const Round median = aggregate(rule(AggregationRule::Median), std::vector<float>(300, 0), updates, weights);
    const Round trimmed = aggregate(rule(AggregationRule::TrimmedMean, 0, 0, 0.2), std::vector<float>(300, 0), updates, weights);
    const size_t k = static_cast<size_t>(std::floor(0.2 * static_cast<double>(n)));
    for (size_t c = 0; c < 300; ++c) {
      std::vector<double> v;
      for (const auto& u : updates) v.push_back(u[c]);
      std::sort(v.begin(), v.end());
      const double m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      double s = 0;
      for (size_t r = k; r < n - k; ++r) s += v[r];
      ASSERT_FLOAT_EQ(median.values()[c], static_cast<float>(m)) << "n " << n << " coordinate " << c;
      ASSERT_FLOAT_EQ(trimmed.values()[c], static_cast<float>(s / static_cast<double>(n - 2 * k))) << "n " << n << " coordinate " << c;
    }
  }
}

TEST(BufferedRounds, StalenessWeightsAreFedBuffs) {
  EXPECT_DOUBLE_EQ(staleness_weight(StalenessWeight::InverseSqrt, 0), 1.0);
  EXPECT_DOUBLE_EQ(staleness_weight(StalenessWeight::InverseSqrt, 3), 0.5);
  EXPECT_DOUBLE_EQ(staleness_weight(StalenessWeight::InverseSqrt, 8), 1.0 / 3);
  EXPECT_DOUBLE_EQ(staleness_weight(StalenessWeight::Constant, 0), 1.0);
  EXPECT_DOUBLE_EQ(staleness_weight(StalenessWeight::Constant, 7), 1.0);
}

TEST(BufferedRounds, AStaleUpdateJoinsTheNewerGlobalAsItsScaledDelta) {
  // Trained from {1, 1} to {3, 4}: delta {2, 3}; at half weight onto the newer global {10, 20}.
  const ParameterSet base = point({1, 1}), current = point({10, 20});
  const ParameterSet rebased = rebase_update(point({3, 4}), base, current, 0.5);
  EXPECT_EQ(std::vector<float>(rebased.tensors[0].as<float>(), rebased.tensors[0].as<float>() + 2), (std::vector<float>{11, 21.5}));
  // A fresh update (its base is the buffer's global) at weight 1 is the update itself.
  const ParameterSet fresh = rebase_update(point({0.1f, 0.3f}), current, current, 1.0);
  EXPECT_EQ(std::vector<float>(fresh.tensors[0].as<float>(), fresh.tensors[0].as<float>() + 2), (std::vector<float>{0.1f, 0.3f}));
  EXPECT_THROW(rebase_update(point({1, 2, 3}), base, current, 1.0), std::invalid_argument);
  // With the mean of a buffer: global + the mean of the weighted deltas.
  auto agg = make_aggregation(rule(AggregationRule::Mean), std::make_shared<ParameterSet>(current), scratch());
  agg->add("a#0", rebase_update(point({3, 4}), base, current, 0.5), 0.5);  // delta {1, 1.5}
  agg->add("b#1", rebase_update(point({12, 18}), current, current, 1.0), 0.5);  // delta {2, -2}
  const ParameterSet next = agg->finish().parameters;
  EXPECT_FLOAT_EQ(next.tensors[0].as<float>()[0], 11.5f);
  EXPECT_FLOAT_EQ(next.tensors[0].as<float>()[1], 19.75f);
}
