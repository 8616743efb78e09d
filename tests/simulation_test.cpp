// The simulation runtime (worker/simulation.h) and spec.partition (core/data/partition.h): how a
// dataset is split among many clients, what `zk0 validate` refuses, and that one process hosting
// every client computes exactly what separate worker processes compute.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/data/partition.h"
#include "core/util/fs.h"
#include "support/test_support.h"

using namespace zk0;
namespace fs = std::filesystem;

namespace {

std::string fixture() { return test::shared_dir() + "/fixtures/YifanTian07_G1-policy-train"; }

std::vector<EpisodeTask> episodes_of(int tasks, int per_task) {
  std::vector<EpisodeTask> out;
  for (int t = 0; t < tasks; ++t)
    for (int i = 0; i < per_task; ++i) out.push_back({static_cast<int64_t>(out.size()) * 3 + 1, "task " + std::to_string(t)});
  return out;
}

// Every episode in exactly one share.
void expect_disjoint_cover(const std::vector<std::vector<int64_t>>& shares, const std::vector<EpisodeTask>& episodes) {
  std::multiset<int64_t> dealt;
  for (const auto& s : shares) dealt.insert(s.begin(), s.end());
  std::multiset<int64_t> all;
  for (const auto& e : episodes) all.insert(e.episode);
  EXPECT_EQ(dealt, all);
}

// The mean over clients of the largest fraction of a client's episodes that share one task.
double task_skew(const std::vector<std::vector<int64_t>>& shares, const std::vector<EpisodeTask>& episodes) {
  std::map<int64_t, std::string> task_of;
  for (const auto& e : episodes) task_of[e.episode] = e.task;
  double sum = 0;
  int counted = 0;
  for (const auto& s : shares) {
    if (s.empty()) continue;
    std::map<std::string, int> n;
    for (int64_t e : s) ++n[task_of[e]];
    int most = 0;
    for (const auto& [t, k] : n) most = std::max(most, k);
    sum += static_cast<double>(most) / static_cast<double>(s.size());
    ++counted;
  }
  return sum / counted;
}

// A run of two rounds of a small flow-matching policy, on synthetic data or on the LeRobot
// fixture (26-dimensional state and action; evaluated on two of its episodes).
std::string spec_text(const std::string& name, const std::string& out, const std::string& clients_section,
                      const std::string& extra = "", bool on_fixture = false) {
  const std::string evaluation = on_fixture ? "{path: " + fixture() + ", episodes: [0, 1]}"
                                            : "{synthetic: {task: eval, episodes: 4, episodeLength: 30, seed: 99}}";
  const std::string dims = on_fixture ? ", stateDim: 26, actionDim: 26" : "";
  return "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: " + name + "}\nspec:\n  rounds: 2\n  outputDir: " + out +
         "\n" + clients_section + "  evaluation:\n    dataset: " + evaluation + "\n    mode: quick\n    batches: 2\n    batchSize: 16\n" +
         "  training: {localSteps: 8, batchSize: 32}\n"
         "  policy: {type: flow-matching-mlp, config: {chunkSize: 10, hiddenDim: 64, layers: 2" + dims + "}}\n" + extra;
}

struct Validation {
  int code = 0;
  std::string output;
};

Validation validate(const std::string& text) {
  const std::string dir = test::make_temp_dir("simulation-validate");
  write_file_atomic(dir + "/spec.yaml", text);
  Validation v;
  v.output = test::run_command(std::string(ZK0_BIN_DIR) + "/zk0 validate " + dir + "/spec.yaml 2>&1", &v.code);
  fs::remove_all(dir);
  return v;
}

// Each round's global digest, in order, and how many clients each round accepted.
std::vector<std::pair<std::string, int>> rounds_of(const std::string& out) {
  const auto m = nlohmann::json::parse(read_file(out + "/federated_metrics.json"));
  std::vector<std::pair<std::string, int>> r;
  for (const auto& round : m.at("rounds"))
    if (round.at("round").get<int>() > 0) r.emplace_back(round.at("global_digest").get<std::string>(), round.at("clients_accepted").get<int>());
  return r;
}

int zk0_run(const std::string& spec_path, const std::string& flags, std::string* output = nullptr) {
  int code = -1;
  const std::string text = test::run_command(std::string(ZK0_BIN_DIR) + "/zk0 run " + spec_path + " --fresh " + flags + " 2>&1", &code);
  if (output) *output = text;
  if (code != 0) ADD_FAILURE() << "zk0 run " << spec_path << " " << flags << " exited " << code << ":\n" << text;
  return code;
}

}  // namespace

TEST(Partition, IidDealsEveryEpisodeOnceAndDependsOnTheSeed) {
  const auto episodes = episodes_of(1, 100);
  const auto shares = split_episodes(episodes, 10, PartitionScheme::IID, 1, 7);
  expect_disjoint_cover(shares, episodes);
  for (const auto& s : shares) EXPECT_EQ(s.size(), 10u);
  EXPECT_EQ(shares, split_episodes(episodes, 10, PartitionScheme::IID, 1, 7));
  EXPECT_NE(shares, split_episodes(episodes, 10, PartitionScheme::IID, 1, 8));
}

TEST(Partition, ByTaskGivesEachClientFewTasks) {
  const auto episodes = episodes_of(4, 10);
  const auto shares = split_episodes(episodes, 4, PartitionScheme::Task, 1, 0);
  expect_disjoint_cover(shares, episodes);
  EXPECT_DOUBLE_EQ(task_skew(shares, episodes), 1.0);  // one task per client
  EXPECT_LT(task_skew(split_episodes(episodes, 4, PartitionScheme::IID, 1, 0), episodes), 0.9);
}

TEST(Partition, DirichletSkewsMoreAsAlphaShrinks) {
  const auto episodes = episodes_of(5, 40);
  const auto even = split_episodes(episodes, 5, PartitionScheme::Dirichlet, 1000, 3);
  const auto skewed = split_episodes(episodes, 5, PartitionScheme::Dirichlet, 0.05, 3);
  expect_disjoint_cover(even, episodes);
  expect_disjoint_cover(skewed, episodes);
  EXPECT_LT(task_skew(even, episodes), 0.4);
  EXPECT_GT(task_skew(skewed, episodes), 0.7);
  EXPECT_EQ(skewed, split_episodes(episodes, 5, PartitionScheme::Dirichlet, 0.05, 3));
}

TEST(Partition, AClientWithNoEpisodeIsRefusedNamingIt) {
  EpisodePartition p;
  p.clients = 3;
  p.index = 2;
  const std::string what = [&] {
    try {
      partition_share(episodes_of(1, 2), p, "path:/data/two");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(what.find("path:/data/two: partition 2 of 3"), std::string::npos) << what;
}

TEST(Simulation, ValidateExpandsAPartitionAndRefusesImpossibleSettings) {
  const std::string lerobot = "  partition:\n    clients: 4\n    namePrefix: owner\n    dataset: {path: " + fixture() + "}\n";
  const Validation ok = validate(spec_text("split", "/tmp/x", lerobot, "  simulation: {concurrency: 2}\n"));
  EXPECT_EQ(ok.code, 0) << ok.output;
  for (const char* name : {"owner-000", "owner-003"}) EXPECT_NE(ok.output.find(name), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("partition: {clients: 4, index: 3, by: iid, seed: 0}"), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("concurrency: 2"), std::string::npos) << ok.output;

  const struct {
    std::string text, field;
  } refused[] = {
      {spec_text("c0", "/tmp/x", lerobot, "  simulation: {concurrency: 0}\n"), "spec.simulation.concurrency: must be at least 1"},
      {spec_text("c5", "/tmp/x", lerobot, "  simulation: {concurrency: 5}\n"), "spec.simulation.concurrency: must not exceed the 4"},
      {spec_text("a0", "/tmp/x", "  partition:\n    clients: 4\n    by: dirichlet\n    alpha: 0\n    dataset: {path: " + fixture() + "}\n"),
       "spec.partition.alpha: must be greater than 0"},
      {spec_text("a1", "/tmp/x", "  partition:\n    clients: 4\n    alpha: 2\n    dataset: {path: " + fixture() + "}\n"),
       "spec.partition.alpha: only applies with by: dirichlet"},
      // The fixture has 100 episodes: the 101st client would have none.
      {spec_text("many", "/tmp/x", "  partition:\n    clients: 101\n    dataset: {path: " + fixture() + "}\n"),
       "spec.clients[100].dataset.partition: client client-100 gets none of the 100 episodes"},
      {spec_text("syn", "/tmp/x", "  partition:\n    clients: 3\n    by: task\n    dataset: {synthetic: {task: a}}\n"),
       "spec.partition.by: synthetic datasets are generated per client"},
      {spec_text("none", "/tmp/x", ""), "spec.clients: a non-empty list is required (or spec.partition)"},
  };
  for (const auto& r : refused) {
    const Validation v = validate(r.text);
    EXPECT_EQ(v.code, 2) << r.field << "\n" << v.output;
    EXPECT_NE(v.output.find(r.field), std::string::npos) << v.output;
  }
  // --concurrency follows the same rule, in zk0 run and in the simulating worker alike.
  const std::string dir = test::make_temp_dir("simulation-flag");
  write_file_atomic(dir + "/spec.yaml", spec_text("flag", dir + "/out", lerobot));
  for (const auto& [command, expected] : std::vector<std::pair<std::string, std::string>>{
           {"zk0 run SPEC --concurrency 0", "--concurrency: must be a whole number of at least 1 (got '0')"},
           {"zk0 run SPEC --concurrency two", "--concurrency: must be a whole number of at least 1 (got 'two')"},
           {"zk0 run SPEC --concurrency 5", "--concurrency: must not exceed the 4 clients this machine runs (got 5)"},
           {"zk0-worker simulate --spec SPEC --aggregator 127.0.0.1:1 --state-dir " + dir + "/state --concurrency 5",
            "--concurrency: must not exceed the 4 clients this machine runs (got 5)"}}) {
    std::string line = std::string(ZK0_BIN_DIR) + "/" + command;
    line.replace(line.find("SPEC"), 4, dir + "/spec.yaml");
    int code = -1;
    const std::string out = test::run_command(line + " 2>&1", &code);
    EXPECT_EQ(code, 2) << command << "\n" << out;
    EXPECT_NE(out.find(expected), std::string::npos) << command << "\n" << out;
  }
  EXPECT_FALSE(fs::exists(dir + "/out/federated_metrics.json"));
  fs::remove_all(dir);
}

// Four owners' shares of one LeRobot dataset, trained by four worker processes and then by one
// simulating process: every round's global parameters are the same, bit for bit. Each client
// computes on one thread either way (resources.cpu: 1): the same arithmetic in the same order.
TEST(Simulation, OneProcessComputesTheSameGlobalParametersAsSeparateProcesses) {
  const std::string dir = test::make_temp_dir("simulation-equivalence");
  const std::string clients = "  partition:\n    clients: 4\n    by: dirichlet\n    alpha: 0.5\n    seed: 3\n    resources: {cpu: 1}\n"
                              "    dataset: {path: " + fixture() + "}\n";
  const std::string strategy = "  strategy: {minFitClients: 4, minAvailableClients: 4}\n";
  write_file_atomic(dir + "/separate.yaml", spec_text("separate", dir + "/separate", clients, strategy, true));
  write_file_atomic(dir + "/simulated.yaml", spec_text("simulated", dir + "/simulated", clients, strategy, true));
  ASSERT_EQ(zk0_run(dir + "/separate.yaml", ""), 0);
  std::string output;
  ASSERT_EQ(zk0_run(dir + "/simulated.yaml", "--simulate", &output), 0);
  EXPECT_NE(output.find("simulating 4 clients in one worker process, 1 training at a time"), std::string::npos) << output;
  EXPECT_TRUE(fs::exists(dir + "/simulated/logs/simulation.log"));
  EXPECT_FALSE(fs::exists(dir + "/simulated/logs/client-000.log"));
  EXPECT_TRUE(fs::exists(dir + "/separate/logs/client-000.log"));

  const auto separate = rounds_of(dir + "/separate"), simulated = rounds_of(dir + "/simulated");
  ASSERT_EQ(separate.size(), 2u);
  EXPECT_EQ(simulated, separate);
  for (const auto& [digest, accepted] : simulated) EXPECT_EQ(accepted, 4);
  fs::remove_all(dir);
}

// A hundred owners, one episode of the LeRobot fixture each, in one process, one training at a
// time: every round takes every client's update. A round lasts long enough (about ten seconds
// here) that a client waiting for its turn would be dropped if its heartbeats stalled.
TEST(Simulation, AHundredVirtualClientsTrainInOneProcess) {
  const std::string dir = test::make_temp_dir("simulation-many");
  const int n = 100;
  write_file_atomic(dir + "/many.yaml",
                    spec_text("many", dir + "/out",
                              "  partition:\n    clients: " + std::to_string(n) + "\n    namePrefix: robot\n    dataset: {path: " +
                                  fixture() + "}\n",
                              "  simulation: {concurrency: 1}\n  strategy: {minFitClients: 100, minAvailableClients: 100}\n", true));
  ASSERT_EQ(zk0_run(dir + "/many.yaml", ""), 0);
  const auto rounds = rounds_of(dir + "/out");
  ASSERT_EQ(rounds.size(), 2u);
  for (const auto& [digest, accepted] : rounds) EXPECT_EQ(accepted, n);
  const auto metrics = nlohmann::json::parse(read_file(dir + "/out/federated_metrics.json"));
  std::set<std::string> names;
  for (const auto& c : metrics["rounds"][1]["clients"]) names.insert(c.at("client").get<std::string>());
  EXPECT_EQ(names.size(), static_cast<size_t>(n));
  EXPECT_TRUE(names.count("robot-000") && names.count("robot-099"));
  // The frozen weights were loaded once, for every client: one process, one pool.
  const std::string log = read_file(dir + "/out/logs/simulation.log");
  EXPECT_NE(log.find("event=simulation_started clients=100 concurrency=1"), std::string::npos);
  EXPECT_EQ(read_file(dir + "/out/logs/aggregator.log").find("event=client_dropped"), std::string::npos);
  fs::remove_all(dir);
}
