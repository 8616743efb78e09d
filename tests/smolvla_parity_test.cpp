// zk0's SmolVLA against LeRobot's own (tests/parity/smolvla_reference.py, in .venv-lerobot), both
// ways: LeRobot builds random-weight models of several sizes, `zk0 policy run` loads them; then
// zk0 changes and saves a checkpoint, and LeRobot loads that. Every intermediate the reference
// lists (prefix embeddings, per-layer keys and values, velocity, losses, gradients, a 10-step
// action chunk) must agree within 1e-4 relative in float32.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <cmath>
#include <set>

#include "core/data/dataset.h"
#include "core/policy/policy.h"
#include "core/policy/smolvla/smolvla_policy.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"
#include "support/test_support.h"

namespace zk0 {
namespace {

const std::string kPython = ZK0_PARITY_PYTHON;
const std::string kScript = std::string(ZK0_SOURCE_DIR) + "/tests/parity/smolvla_reference.py";

std::map<std::string, at::Tensor> load(const std::string& file) {
  std::map<std::string, at::Tensor> out;
  for (const auto& t : read_safetensors(file).tensors) out[t.name] = to_aten(t);
  return out;
}

std::string reference(const std::string& args) { return test::run_command(kPython + " " + kScript + " " + args); }

std::map<std::string, at::Tensor> ours(const std::string& model, const std::string& inputs, const std::string& out) {
  test::run_command(test::bin("zk0") + " policy run --gradients --pretrained " + model + " --inputs " + inputs +
                    " --output " + out);
  return load(out);
}

// Every tensor LeRobot wrote must be in ours, equal within 1e-4 of its largest magnitude; and the
// gradients are of exactly the same parameters (LeRobot writes one per requires_grad).
void expect_same(const std::map<std::string, at::Tensor>& expected, const std::map<std::string, at::Tensor>& actual,
                 const std::string& what) {
  ASSERT_GT(expected.size(), 10u);
  const auto gradients = [](const std::map<std::string, at::Tensor>& m) {
    std::set<std::string> names;
    for (const auto& [name, t] : m)
      if (name.rfind("grad.", 0) == 0) names.insert(name);
    return names;
  };
  EXPECT_EQ(gradients(actual), gradients(expected)) << what << ": the trainable parameters differ";
  for (const auto& [name, e] : expected) {
    auto it = actual.find(name);
    ASSERT_NE(it, actual.end()) << what << ": zk0 did not write " << name;
    const at::Tensor a = it->second;
    ASSERT_EQ(a.sizes(), e.sizes()) << what << ": " << name;
    if (e.scalar_type() == at::kBool) {
      EXPECT_TRUE(a.to(at::kBool).equal(e)) << what << ": " << name;
      continue;
    }
    const double scale = e.abs().max().item<double>();
    const double diff = (a.to(at::kDouble) - e.to(at::kDouble)).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * scale + 1e-7) << what << ": " << name << " differs by " << diff << " (largest |value| "
                                         << scale << ")";
  }
}

struct ParityCase {
  std::string name;
  std::string config;  // smolvla_reference.py build's CONFIG
};

void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

class SmolVLAParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(SmolVLAParity, MatchesLeRobotBothWays) {
  const std::string dir = test::make_temp_dir("smolvla-parity-" + GetParam().name);
  const std::string model = dir + "/lerobot-model", inputs = dir + "/inputs.safetensors";
  std::ofstream(dir + "/config.json") << GetParam().config;
  reference("build " + model + " " + dir + "/config.json");
  reference("inputs " + model + " " + inputs + " 7");

  reference("run " + model + " " + inputs + " " + dir + "/lerobot.safetensors");
  const auto expected = load(dir + "/lerobot.safetensors");
  expect_same(expected, ours(model, inputs, dir + "/zk0.safetensors"), "LeRobot's checkpoint");

  // The other way: zk0 changes every trainable tensor and saves; LeRobot loads that folder.
  PolicySpec spec;
  spec.type = "smolvla";
  spec.pretrained = model;
  auto policy = make_policy(spec);
  {
    at::NoGradGuard no_grad;
    for (auto& [name, t] : policy->trainable_parameters()) t.add_(at::randn_like(t) * 0.05);
  }
  const std::string saved = dir + "/zk0-model";
  save_pretrained(*policy, saved);
  reference("run " + saved + " " + inputs + " " + dir + "/lerobot-on-zk0.safetensors");
  const auto expected_saved = load(dir + "/lerobot-on-zk0.safetensors");
  EXPECT_FALSE(expected_saved.at("velocity").allclose(expected.at("velocity")))
      << "the saved change did not reach LeRobot";
  expect_same(expected_saved, ours(saved, inputs, dir + "/zk0-on-zk0.safetensors"), "zk0's checkpoint");
  std::filesystem::remove_all(dir);
}

// What trains, for every setting of LeRobot's three switches, is what LeRobot's requires_grad says.
TEST(SmolVLATrainable, EveryCombinationOfTheFreezeSwitchesTrainsWhatLeRobotTrains) {
  const std::string dir = test::make_temp_dir("smolvla-trainable");
  std::ofstream(dir + "/config.json") << R"({"text": {"hidden": 48, "intermediate": 96, "heads": 3, "kv_heads": 3, "layers": 4, "vlm_layers": 2},
      "vision": {"hidden": 32, "intermediate": 48, "layers": 1, "heads": 4}, "vocab": 280, "image_size": 32, "patch_size": 8,
      "scale_factor": 2, "cameras": 2, "chunk": 4, "max_state_dim": 8, "max_action_dim": 8, "state": 6, "action": 6,
      "expert_width_multiplier": 0.5, "self_attn_every_n_layers": 2, "seed": 4})";
  reference("build " + dir + "/model " + dir + "/config.json");
  reference("trainable " + dir + "/model " + dir + "/trainable.json");
  const nlohmann::json lerobot = nlohmann::json::parse(read_file(dir + "/trainable.json"));
  ASSERT_EQ(lerobot.size(), 8u);
  for (auto it = lerobot.begin(); it != lerobot.end(); ++it) {
    const std::string flags = it.key();
    PolicySpec spec;
    spec.type = "smolvla";
    spec.pretrained = dir + "/model";
    spec.config = {{"train_expert_only", flags[0] == 'T'}, {"freeze_vision_encoder", flags[1] == 'T'},
                   {"train_state_proj", flags[2] == 'T'}};
    auto policy = make_policy(spec);
    std::set<std::string> ours, theirs(it.value().begin(), it.value().end());
    for (const auto& [name, t] : policy->trainable_parameters()) ours.insert(name);
    EXPECT_EQ(ours, theirs) << "train_expert_only, freeze_vision_encoder, train_state_proj = " << flags;
    for (const auto& [name, t] : policy->parameters()) EXPECT_EQ(t.requires_grad(), ours.count(name) > 0) << name;
  }
  std::filesystem::remove_all(dir);
}

// A federation of a tiny SmolVLA on LeRobot datasets with camera video, run by `zk0 run`: the
// aggregator's checkpoint is a LeRobot pretrained folder that LeRobot loads and agrees with.
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
                           "  strategy: {type: fedprox, proximalMu: 0.01, minFitClients: 2, minAvailableClients: 2}\n"
                           "  policy:\n    type: smolvla\n    config:\n"
                           "      vlm_model_name: " + std::string(ZK0_SOURCE_DIR) + "/examples/smolvla-tiny/backbone\n"
                           "      num_vlm_layers: 2\n      chunk_size: 6\n      n_action_steps: 6\n"
                           "      resize_imgs_with_padding: [64, 64]\n      tokenizer_max_length: 12\n"
                           "      input_features: {observation.state: {type: STATE, shape: [6]}, "
                           "observation.images.front: {type: VISUAL, shape: [3, 64, 96]}}\n"
                           "      output_features: {action: {type: ACTION, shape: [6]}}\n";
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

// Widths, layer counts, GQA group sizes, interleave periods, one to three cameras (one of them
// LeRobot's synthetic empty camera), chunk sizes and padded state/action widths all vary.
INSTANTIATE_TEST_SUITE_P(
    Sizes, SmolVLAParity,
    ::testing::Values(
        ParityCase{"two-cameras",
                   R"({"text": {"hidden": 64, "intermediate": 128, "heads": 4, "kv_heads": 2, "layers": 6, "vlm_layers": 4},
                       "vision": {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 2},
                       "vocab": 300, "image_size": 32, "patch_size": 8, "scale_factor": 2, "cameras": 2, "chunk": 6,
                       "max_state_dim": 8, "max_action_dim": 8, "state": 6, "action": 6,
                       "expert_width_multiplier": 0.75, "self_attn_every_n_layers": 2, "seed": 1})"},
        ParityCase{"one-camera",
                   R"({"text": {"hidden": 96, "intermediate": 160, "heads": 6, "kv_heads": 2, "layers": 3, "vlm_layers": 3},
                       "vision": {"hidden": 48, "intermediate": 96, "layers": 1, "heads": 3},
                       "vocab": 320, "image_size": 48, "patch_size": 8, "scale_factor": 3, "cameras": 1, "chunk": 4,
                       "max_state_dim": 32, "max_action_dim": 32, "state": 6, "action": 6,
                       "expert_width_multiplier": 0.5, "self_attn_every_n_layers": 3, "seed": 2})"},
        ParityCase{"three-cameras",
                   R"({"text": {"hidden": 48, "intermediate": 96, "heads": 3, "kv_heads": 3, "layers": 2, "vlm_layers": 2},
                       "vision": {"hidden": 32, "intermediate": 48, "layers": 2, "heads": 4},
                       "vocab": 280, "image_size": 32, "patch_size": 4, "scale_factor": 4, "cameras": 2,
                       "empty_cameras": 1, "chunk": 10, "max_state_dim": 12, "max_action_dim": 10, "state": 7,
                       "action": 5, "expert_width_multiplier": 0.75, "self_attn_every_n_layers": 2, "seed": 3})"},
        // The options checkpoints in the wild set: image special tokens, joint self-attention in
        // every expert layer, images resized to twice the vision tower's size (an 8x8 patch grid
        // on a 4x4 position table), and the whole VLM training but the vision tower.
        ParityCase{"special-tokens-self-attn-resized",
                   R"({"text": {"hidden": 64, "intermediate": 96, "heads": 4, "kv_heads": 2, "layers": 3, "vlm_layers": 3},
                       "vision": {"hidden": 32, "intermediate": 48, "layers": 1, "heads": 2},
                       "vocab": 300, "image_size": 32, "patch_size": 8, "scale_factor": 2, "cameras": 2, "resize": [64, 64],
                       "chunk": 5, "max_state_dim": 8, "max_action_dim": 8, "state": 6, "action": 6,
                       "expert_width_multiplier": 0.75, "self_attn_every_n_layers": 2, "attention_mode": "self_attn",
                       "add_image_special_tokens": true, "train_expert_only": false, "train_state_proj": false, "seed": 5})"}),
    [](const ::testing::TestParamInfo<ParityCase>& info) {
      std::string n = info.param.name;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

}  // namespace
}  // namespace zk0
