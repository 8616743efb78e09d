// `zk0 aggregate`: the spec's rule over update files, through the aggregator's own code, and a
// clear refusal naming the file for every update the aggregator itself would refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/tensor/safetensors.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;

namespace {

struct Files {
  std::string dir = make_temp_dir("aggregate-cli");
  std::string spec;
  std::vector<std::string> args;
  explicit Files(const std::string& aggregation) {
    spec = write_spec(dir, small_spec(dir + "/out", 5, 1,
                                      {{"minFitClients", "5"}, {"minAvailableClients", "5"}, {"aggregation", aggregation}}));
    write_safetensors(dir + "/global.safetensors", point({0}));
  }
  void update(const std::string& client, const ParameterSet& p) {
    const std::string path = dir + "/" + client + ".safetensors";
    write_safetensors(path, p);
    args.push_back("--update " + client + "=" + path);
  }
  std::string run(int& code, const std::string& extra = "") const {
    std::string cmd = bin("zk0") + " aggregate " + spec + " --global " + dir + "/global.safetensors --output " + dir + "/out.safetensors";
    for (const auto& a : args) cmd += " " + a;
    return run_command(cmd + " " + extra, &code);
  }
};

}  // namespace

TEST(AggregateCommand, KrumOverFilesMatchesTheHandComputedSelection) {
  Files f("aggregation: {rule: krum, byzantine: 1}");
  const float points[] = {0, 1, 2, 3, 100};  // scores 5, 2, 2, 5, 19013: c1 wins the tie by name
  for (int i = 0; i < 5; ++i) f.update("c" + std::to_string(i), point({points[i]}));
  int code = -1;
  const std::string out = f.run(code);
  ASSERT_EQ(code, 0) << out;
  const ParameterSet result = read_safetensors(f.dir + "/out.safetensors");
  EXPECT_EQ(result.tensors.at(0).as<float>()[0], 1.0f);
  const auto report = nlohmann::json::parse(out);
  EXPECT_EQ(report["rule"], "krum");
  ASSERT_EQ(report["updates"].size(), 5u);
  for (const auto& u : report["updates"]) EXPECT_EQ(u["outcome"], u["client"] == "c1" ? "accepted" : "discarded") << u.dump();
  EXPECT_FALSE(std::filesystem::exists(f.dir + "/.zk0-aggregate-scratch")) << "the scratch folder is removed";
}

TEST(AggregateCommand, TheMeanUsesTheGivenWeights) {
  Files f("");
  f.update("a", point({1}));
  f.update("b", point({4}));
  int code = -1;
  const std::string out = f.run(code, "--weight a=0.75 --weight b=0.25");
  ASSERT_EQ(code, 0) << out;
  EXPECT_FLOAT_EQ(read_safetensors(f.dir + "/out.safetensors").tensors.at(0).as<float>()[0], 1.75f);
  const std::string partial = f.run(code, "--weight a=0.75");
  EXPECT_EQ(code, kExitInvalidInput) << partial;
  EXPECT_NE(partial.find("--weight: give one for every update or none"), std::string::npos) << partial;
}

TEST(AggregateCommand, RefusesWhatTheAggregatorWouldRefuseNamingTheFile) {
  struct Case {
    const char* what;
    ParameterSet bad;
    const char* expected;
  };
  std::vector<Case> cases;
  cases.push_back({"NaN", point({NAN}), "c4.safetensors: tensor 'w' holds NaN or infinity"});
  cases.push_back({"layout", point({1}, "bias"), "c4.safetensors: layout: tensor 'bias' does not match 'w'"});
  cases.push_back({"norm", point({1e5f}), "c4.safetensors: update is 100000.000000 from the global parameters, more than spec.strategy.maxUpdateNorm"});
  for (auto& c : cases) {
    Files f("aggregation: {rule: median}");
    for (int i = 0; i < 4; ++i) f.update("c" + std::to_string(i), point({static_cast<float>(i)}));
    f.update("c4", c.bad);
    int code = -1;
    const std::string out = f.run(code);
    EXPECT_EQ(code, kExitInvalidInput) << c.what << ": " << out;
    EXPECT_NE(out.find(c.expected), std::string::npos) << c.what << ": " << out;
    EXPECT_FALSE(std::filesystem::exists(f.dir + "/out.safetensors")) << c.what;
  }
  // Fewer updates than the rule needs.
  Files f("aggregation: {rule: krum, byzantine: 1}");
  for (int i = 0; i < 4; ++i) f.update("c" + std::to_string(i), point({static_cast<float>(i)}));
  int code = -1;
  const std::string out = f.run(code);
  EXPECT_EQ(code, kExitInvalidInput);
  EXPECT_NE(out.find("krum needs at least 5 updates, got 4"), std::string::npos) << out;
}

TEST(AggregateCommand, ADifferentiallyPrivateSpecIsRefusedRatherThanAveragedWithoutItsNoise) {
  Files f("privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}");
  std::string yaml = read_file(f.spec);  // Poisson sampling replaces the quorum and fraction
  for (const std::string line : {"    fractionFit: 1.0\n", "    minFitClients: 5\n"}) yaml.erase(yaml.find(line), line.size());
  ASSERT_EQ(write_spec(f.dir, yaml), f.spec);
  for (int i = 0; i < 5; ++i) f.update("c" + std::to_string(i), point({static_cast<float>(i)}));
  int code = -1;
  const std::string out = f.run(code);
  EXPECT_EQ(code, kExitInvalidInput) << out;
  EXPECT_NE(out.find("spec.strategy.privacy: a differentially private round cannot be recomputed"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(f.dir + "/out.safetensors"));
}
