// zk0's SmolVLA against LeRobot's own (tests/parity/smolvla_reference.py, in .venv-lerobot), both
// ways: LeRobot builds random-weight models of several sizes, `zk0 policy run` loads them; then
// zk0 changes and saves a checkpoint, and LeRobot loads that. Every intermediate the reference
// lists (prefix embeddings, per-layer keys and values, velocity, losses, gradients, a 10-step
// action chunk) must agree within 1e-4 relative in float32. ZK0_PARITY_DEVICE=cuda runs zk0's side
// on the GPU (scripts/gpu-check.sh); LeRobot's stays the CPU reference.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <cmath>
#include <set>

#include "core/policy/policy.h"
#include "core/policy/smolvla/smolvla_policy.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"
#include "support/smolvla_reference.h"
#include "support/test_support.h"

namespace zk0 {
namespace {

using test::expect_same;
using test::load;
using test::ours;
using test::reference;

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
