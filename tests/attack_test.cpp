// Byzantine clients against the aggregation rules. The attacks' arithmetic against values computed
// by hand; then whole federations of real processes on loopback gRPC in which zk0-byzantine-worker
// plays the attackers: FedAvg is broken by them and the robust rules are not. bench/attack_bench
// measures every attack against every rule for the README's table.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>

#include "attack/adversary.h"
#include "attack/attacked_federation.h"
#include "core/util/fs.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;

namespace {

std::vector<float> values(const ParameterSet& p) {
  const Tensor& t = p.tensors.at(0);
  return {t.as<float>(), t.as<float>() + t.numel()};
}

}  // namespace

TEST(Attacks, AreParsedWithTheirDefaultsAndUnknownNamesAreRefused) {
  EXPECT_EQ(parse_attack("signFlip", 5, 1).strength, 10);
  EXPECT_EQ(parse_attack("scale", 5, 1).strength, 100);
  EXPECT_EQ(parse_attack("scale:3.5", 5, 1).strength, 3.5);
  EXPECT_EQ(parse_attack("innerProduct", 10, 2).kind, AttackKind::InnerProduct);
  try {
    parse_attack("flip", 5, 1);
    FAIL() << "an unknown attack was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("aLittleIsEnough"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_attack("scale:lots", 5, 1), std::invalid_argument);
}

TEST(Attacks, ALittleIsEnoughUsesBaruchEtAlsZMax) {
  // n = 5, f = 1: s = floor(5/2 + 1) - 1 = 2 supporters, z = Phi^-1(3/5).
  EXPECT_NEAR(a_little_is_enough_z(5, 1), 0.253347, 1e-5);
  // n = 10, f = 2: s = 4, z = Phi^-1(6/10), the same.
  EXPECT_NEAR(a_little_is_enough_z(10, 2), 0.253347, 1e-5);
  // n = 50, f = 12 (the paper's CIFAR setting): s = 14, z = Phi^-1(36/50).
  EXPECT_NEAR(a_little_is_enough_z(50, 12), 0.582842, 1e-5);
  EXPECT_NEAR(parse_attack("aLittleIsEnough", 5, 1).strength, 0.253347, 1e-5);
}

TEST(Attacks, CraftDeltasAsTheLiteratureStatesThem) {
  const ParameterSet own = point({1, -2, 0.5});
  EXPECT_EQ(values(malicious_delta({AttackKind::SignFlip, 4}, own, nullptr, 1)), (std::vector<float>{-4, 8, -2}));
  EXPECT_EQ(values(malicious_delta({AttackKind::Scale, 100}, own, nullptr, 1)), (std::vector<float>{100, -200, 50}));

  // Honest deltas {0, 2, 4} and {2, 2, 0}: mean {1, 2, 2}, population std {1, 0, 2}.
  const DeltaMoments m = delta_moments({point({0, 2, 4}), point({2, 2, 0})});
  EXPECT_EQ(values(m.mean), (std::vector<float>{1, 2, 2}));
  EXPECT_EQ(values(m.stddev), (std::vector<float>{1, 0, 2}));
  EXPECT_EQ(values(malicious_delta({AttackKind::ALittleIsEnough, 1.5}, own, &m, 1)), (std::vector<float>{-0.5, 2, -1}));
  EXPECT_EQ(values(malicious_delta({AttackKind::InnerProduct, 0.5}, own, &m, 1)), (std::vector<float>{-0.5, -1, -1}));
  EXPECT_THROW(malicious_delta({AttackKind::InnerProduct, 0.5}, own, nullptr, 1), std::invalid_argument);

  // Gaussian: zero-mean noise with s times the RMS of the own delta, reproducible from its seed.
  std::vector<float> big(20000, 0.f);
  big[0] = std::sqrt(20000.f);  // RMS 1
  const std::vector<float> noise = values(malicious_delta({AttackKind::Gaussian, 3}, point(big), nullptr, 7));
  double sum = 0, sq = 0;
  for (float v : noise) sum += v, sq += double(v) * v;
  EXPECT_NEAR(sum / noise.size(), 0, 0.1);
  EXPECT_NEAR(std::sqrt(sq / noise.size()), 3, 0.1);
  EXPECT_EQ(noise, values(malicious_delta({AttackKind::Gaussian, 3}, point(big), nullptr, 7)));
}

namespace {

// Four honest clients and one attacker, FedAvg's settings otherwise.
AttackedOutcome federation(const std::string& tag, const std::string& attack, const std::string& aggregation, int rounds = 5) {
  AttackedRun run;
  run.clients = 5;
  run.byzantine = 1;
  run.attack = attack;
  run.aggregation = aggregation;
  run.rounds = rounds;
  return run_attacked_federation(run, make_temp_dir(tag));
}

}  // namespace

TEST(AttackedFederation, ScaledUpdatesBreakFedAvgAndNotTheMedianOrKrum) {
  const AttackedOutcome honest = federation("attack-honest", "", "");
  const AttackedOutcome fedavg = federation("attack-fedavg", "scale", "");
  const AttackedOutcome median = federation("attack-median", "scale", "aggregation: {rule: median}");
  const AttackedOutcome krum = federation("attack-krum", "scale", "aggregation: {rule: krum, byzantine: 1}");
  EXPECT_GT(fedavg.final_loss, 2 * honest.final_loss) << fedavg.logs;
  EXPECT_LT(median.final_loss, 1.1 * honest.final_loss) << median.logs;
  EXPECT_LT(krum.final_loss, 1.1 * honest.final_loss) << krum.logs;
  // Krum discards the attacker's update every round, and says why.
  for (const auto& round : krum.metrics["rounds"]) {
    if (round["round"].get<int>() == 0) continue;
    bool discarded = false;
    for (const auto& c : round["clients"])
      if (c["client"] == "c4") discarded = c["status"] == "discarded";
    EXPECT_TRUE(discarded) << round.dump();
  }
}

TEST(AttackedFederation, TheOmniscientAttackersTrainExactlyTheHonestUpdates) {
  // innerProduct with eps = -1 uploads +1 times the honest clients' mean delta. If the colluders'
  // copies of the honest rounds are exact, FedAvg over four honest clients and that mean is the
  // honest-only mean, and the two runs end at the same loss (up to float rounding of the blend).
  const AttackedOutcome honest = federation("attack-exact-honest", "", "", 3);
  const AttackedOutcome echoed = federation("attack-exact-echo", "innerProduct:-1", "", 3);
  EXPECT_NEAR(echoed.final_loss, honest.final_loss, 1e-4 * honest.final_loss) << echoed.logs;
  const AttackedOutcome reversed = federation("attack-exact-reversed", "innerProduct:1", "", 3);
  EXPECT_GT(std::abs(reversed.final_loss - honest.final_loss), 1e-3 * honest.final_loss);
}

// Contribution scores (spec.evaluation.contributionScores): with three honest clients and one
// sending noise, both estimates rank the noise lowest in every round and in the running totals
// the status reports, and the ledger records them with each update.
// Under the mean, leave-one-out takes each aggregate without a client from the round's aggregate
// (core/aggregation/deltas.h mean_without); clipped at a quantile of the round's norms (here 1:
// nothing is clipped, the same updates), it runs the rule again without the client. Both ways
// find the noise.
class ContributionScores : public ::testing::TestWithParam<std::string> {};

TEST_P(ContributionScores, AClientSendingNoiseScoresLowestByBothEstimates) {
  AttackedRun run;
  run.aggregation = GetParam();
  run.clients = 4;
  run.byzantine = 1;
  run.attack = "gaussian";
  run.rounds = 3;
  // Two evaluation sets, as a run with a sponsor's: the run's own held-out task and another.
  run.overrides = {{"evalEvery", "1\n    contributionScores: {firstOrder: true, leaveOneOut: true}"},
                   {"evaluation", "sets:\n"
                                  "    - {name: heldout, dataset: {synthetic: {task: \"held-out task\", episodes: 4, episodeLength: 40, seed: 99}},"
                                  " batches: 2, batchSize: 32, seed: 3}\n"
                                  "    - {name: sponsor-a, dataset: {synthetic: {task: \"sponsor task\", episodes: 3, episodeLength: 40, seed: 7}},"
                                  " batches: 2, batchSize: 16, seed: 5}"}};
  const std::vector<std::string> sets = {"heldout", "sponsor-a"};
  const std::string dir = make_temp_dir("scores");
  SCOPED_TRACE(run.aggregation);
  const AttackedOutcome outcome = run_attacked_federation(run, dir);
  for (const auto& round : outcome.metrics["rounds"]) {
    // Each set's loss, every evaluated round; the first set's is the server loss.
    ASSERT_EQ(round["eval_sets"].size(), 2u) << round.dump();
    EXPECT_EQ(round["eval_sets"]["heldout"]["loss"], round["server_eval_loss"]);
    EXPECT_NE(round["eval_sets"]["sponsor-a"]["loss"], round["server_eval_loss"]);
    EXPECT_EQ(round["eval_sets"]["sponsor-a"]["samples"], 32);
    if (round["round"].get<int>() == 0) continue;
    for (const auto& set : sets) {
      std::map<std::string, std::pair<double, double>> scores;  // client -> (first order, leave one out)
      for (const auto& c : round["clients"]) {
        const auto& s = c["set_scores"][set];
        ASSERT_TRUE(s.contains("first_order") && s.contains("leave_one_out")) << c.dump();
        scores[c["client"].get<std::string>()] = {s["first_order"].get<double>(), s["leave_one_out"].get<double>()};
        if (set == sets[0]) {
          EXPECT_EQ(c["score_first_order"], s["first_order"]);
          EXPECT_EQ(c["score_leave_one_out"], s["leave_one_out"]);
        }
      }
      ASSERT_EQ(scores.size(), 4u) << round.dump();
      for (const char* honest : {"c0", "c1", "c2"}) {
        EXPECT_LT(scores["c3"].first, scores[honest].first) << set << " " << round.dump();
        EXPECT_LT(scores["c3"].second, scores[honest].second) << set << " " << round.dump();
      }
      // Leaving the noise out lowers the loss: its leave-one-out score is negative.
      EXPECT_LT(scores["c3"].second, 0) << set << " " << round.dump();
    }
  }
  const nlohmann::json status = read_json(dir + "/out/status.json");
  const nlohmann::json& last = outcome.metrics["rounds"].back();
  for (const auto& set : sets) EXPECT_EQ(status["evaluation_losses"][set], last["eval_sets"][set]["loss"]) << status.dump();
  for (const char* honest : {"c0", "c1", "c2"})
    for (const char* estimate : {"first_order", "leave_one_out"}) {
      EXPECT_LT(status["clients"]["c3"]["contribution_score"][estimate].get<double>(),
                status["clients"][honest]["contribution_score"][estimate].get<double>())
          << status.dump();
      for (const auto& set : sets)
        EXPECT_LT(status["clients"]["c3"]["contribution_score_by_set"][set][estimate].get<double>(),
                  status["clients"][honest]["contribution_score_by_set"][set][estimate].get<double>())
            << set << " " << status.dump();
    }
  // The ledger signs each set's loss with its round, and each update's scores on every set.
  size_t scored_entries = 0, round_entries = 0;
  std::istringstream ledger(read_file(dir + "/out/ledger.jsonl"));
  for (std::string line; std::getline(ledger, line);) {
    const auto e = nlohmann::json::parse(line);
    scored_entries += e["kind"] == "update" && e["decision"]["set_scores"]["sponsor-a"].contains("leave_one_out");
    if (e["kind"] == "round") {
      ++round_entries;
      EXPECT_EQ(e["eval"]["sets"]["sponsor-a"]["loss"], outcome.metrics["rounds"][e["round"].get<int>()]["eval_sets"]["sponsor-a"]["loss"]);
    }
  }
  EXPECT_EQ(scored_entries, 12u);
  EXPECT_EQ(round_entries, 3u);
  // The CSV: a loss column per set, a score column per set and estimate.
  const std::string csv = read_file(dir + "/out/federated_metrics.csv");
  for (const char* column : {",eval_loss:heldout,eval_loss:sponsor-a,", ",score_first_order:sponsor-a,score_leave_one_out:sponsor-a"})
    EXPECT_NE(csv.substr(0, csv.find('\n')).find(column), std::string::npos) << csv.substr(0, csv.find('\n'));
  // Nothing of the rounds' uploads is left once they are scored (keepUpdates is off).
  EXPECT_FALSE(file_exists(dir + "/out/updates/round_0001"));
}

INSTANTIATE_TEST_SUITE_P(LeaveOneOut, ContributionScores, ::testing::Values("", "clipping: {quantile: 1}"),
                         [](const auto& info) { return info.param.empty() ? std::string("MeanClosedForm") : std::string("RuleRunAgain"); });
