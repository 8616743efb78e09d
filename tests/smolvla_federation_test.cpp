// SmolVLA federated by `zk0 run` on LeRobot datasets with camera video: every round trains, and
// the aggregator's checkpoint is a LeRobot pretrained folder that LeRobot loads and agrees with,
// processors included.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/data/open_dataset.h"
#include "core/policy/policy.h"
#include "core/policy/smolvla/smolvla_policy.h"
#include "core/spec/federation_spec.h"
#include "core/tensor/safetensors.h"
#include "support/smolvla_reference.h"
#include "support/test_support.h"

namespace zk0 {
namespace {

using test::expect_same;
using test::load;
using test::ours;
using test::reference;

TEST(SmolVLAFederation, TrainsOnVideoDatasetsAndItsCheckpointLoadsInLeRobot) {
  const std::string dir = test::make_temp_dir("smolvla-federation");
  const std::vector<std::pair<std::string, std::string>> datasets = {
      {"a", "pick up the red cube"}, {"b", "open the drawer"}, {"eval", "stack the cubes"}};
  int seed = 1;
  for (const auto& [name, task] : datasets)
    test::run_command(test::bin("zk0") + " dataset synth " + dir + "/" + name + " --version v3.0 --episodes 3" +
                      " --episode-length 30 --cameras 1 --height 64 --width 96 --seed " + std::to_string(seed++) +
                      " --task '" + task + "'");
  const std::string yaml = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: smolvla-test}\nspec:\n"
                           "  rounds: 2\n  outputDir: " + dir + "/out\n  clients:\n"
                           "    - {name: a, dataset: {path: " + dir + "/a}}\n    - {name: b, dataset: {path: " + dir + "/b}}\n"
                           "  evaluation: {dataset: {path: " + dir + "/eval}, batches: 2, batchSize: 4}\n"
                           "  training: {localSteps: 3, batchSize: 4}\n"
                           "  strategy: {type: fedprox, proximalMu: 0.01, minFitClients: 2, minAvailableClients: 2}\n" +
                           test::tiny_smolvla_policy();
  const std::string spec = test::write_spec(dir, yaml);
  int code = -1;
  const std::string log = test::run_command(test::bin("zk0") + " run " + spec, &code);
  ASSERT_EQ(code, 0) << log;
  // Every planned round, with both clients accepted, finite losses and a server evaluation.
  const auto metrics = test::read_json(dir + "/out/federated_metrics.json");
  const auto& rounds = metrics["rounds"];
  ASSERT_EQ(rounds.size(), 3u) << metrics.dump();
  for (int r = 0; r <= 2; ++r) {
    EXPECT_EQ(rounds[r]["round"], r);
    EXPECT_TRUE(std::isfinite(rounds[r]["server_eval_loss"].get<double>())) << rounds[r].dump();
    if (r == 0) continue;
    EXPECT_EQ(rounds[r]["clients_accepted"], 2) << rounds[r].dump();
    for (const auto& c : rounds[r]["clients"]) {
      EXPECT_EQ(c["status"], "accepted") << c.dump();
      EXPECT_TRUE(std::isfinite(c["loss"].get<double>())) << c.dump();
      EXPECT_GT(c["update_norm"].get<double>(), 0) << c.dump();
    }
  }

  std::string latest = test::run_command("cat " + dir + "/out/checkpoints/latest");
  latest.erase(latest.find_last_not_of("\n") + 1);
  const std::string checkpoint = dir + "/out/checkpoints/" + latest;
  EXPECT_EQ(test::read_json(checkpoint + "/config.json")["type"], "smolvla");
  // The federation trained: every trainable tensor of the checkpoint moved from the initial
  // model's, every frozen one stayed.
  {
    PolicySpec initial_spec = load_spec(spec).policy;
    auto initial = make_policy(initial_spec);
    std::map<std::string, at::Tensor> start;
    for (const auto& [name, t] : initial->parameters()) start[name] = t.detach().to(at::kFloat);
    size_t moved = 0, trainable = 0;
    for (const auto& t : read_safetensors(checkpoint + "/model.safetensors").tensors) {
      // Frozen tensors are written in their checkpoint dtype (BF16): compare in that dtype.
      const bool differs = !to_aten(t).to(at::kFloat).equal(start.at(t.name).to(aten_dtype(t.dtype)).to(at::kFloat));
      if (initial->is_trainable(t.name)) {
        ++trainable;
        moved += differs;
      } else {
        EXPECT_FALSE(differs) << t.name << " is frozen but changed";
      }
    }
    EXPECT_GT(trainable, 10u);
    EXPECT_EQ(moved, trainable);
  }
  const std::string inputs = dir + "/inputs.safetensors";
  reference("inputs " + checkpoint + " " + inputs + " 3");
  reference("run " + checkpoint + " " + inputs + " " + dir + "/lerobot.safetensors");
  expect_same(load(dir + "/lerobot.safetensors"), ours(checkpoint, inputs, dir + "/zk0.safetensors"),
              "the aggregator's checkpoint");

  // Its processor files: LeRobot's own pipelines load them, normalise with the evaluation
  // dataset's statistics and tokenize the prompt as zk0's tokenizer does.
  reference("processors " + checkpoint + " " + dir + "/processed.safetensors");
  const auto processed = load(dir + "/processed.safetensors");
  DatasetSpec eval_spec;
  eval_spec.path = dir + "/eval";
  const auto eval = open_dataset(eval_spec, 6, false);
  const at::Tensor state = at::arange(1, 7, at::kFloat), action = at::arange(1, 7, at::kFloat);
  const at::Tensor expected_state = (state - eval->state_stats().mean) / eval->state_stats().std;
  const at::Tensor expected_action = action * eval->action_stats().std + eval->action_stats().mean;
  EXPECT_TRUE(processed.at("observation.state").reshape({-1}).allclose(expected_state, 1e-4, 1e-5))
      << processed.at("observation.state") << expected_state;
  EXPECT_TRUE(processed.at("action").reshape({-1}).allclose(expected_action, 1e-4, 1e-5));
  PolicySpec reloaded;
  reloaded.type = "smolvla";
  reloaded.pretrained = checkpoint;
  auto policy = make_policy(reloaded);
  const auto [ids, mask] = dynamic_cast<smolvla::SmolVLAPolicy&>(*policy).tokenize({"pick up the cube"});
  EXPECT_TRUE(ids.equal(processed.at("observation.language.tokens"))) << ids << processed.at("observation.language.tokens");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zk0
