// Sample for sample against LeRobot itself (pinned in tests/parity/, installed into .venv-lerobot
// by scripts/setup-test.sh): datasets recorded by LeRobot in both codebase versions (v3.0 by
// 0.4.4, v2.1 by 0.3.3) and both codecs, and our own synth output loaded by LeRobot. v2.1
// datasets are read by us directly and by LeRobot 0.4.4 after its own v2.1 -> v3.0 converter. State, action chunk, padding and task must be equal,
// pixels within 1/255.
#include <gtest/gtest.h>

#include <set>

#include <cmath>
#include <filesystem>

#include "core/data/lerobot_dataset.h"
#include "core/lerobot/synth.h"
#include "core/tensor/safetensors.h"
#include "support/test_support.h"

using namespace zk0;
namespace fs = std::filesystem;

namespace {

// Runs tests/parity/lerobot_reference.py; `v21` puts LeRobot 0.3.3 (which records v2.1) first.
void reference(const std::string& work, const std::string& args, bool v21 = false) {
  const std::string python = ZK0_PARITY_PYTHON;
  const std::string overlay = fs::path(python).parent_path().parent_path() / "lerobot-0.3.3";
  const std::string cmd = (v21 ? "PYTHONPATH=" + overlay + " " : std::string()) + "HF_LEROBOT_HOME=" + work + "/hf-home " + python + " " +
                          std::string(ZK0_SOURCE_DIR) + "/tests/parity/lerobot_reference.py " + args + " > " + work +
                          "/reference.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << test::Process({"/bin/cat", work + "/reference.log"}, "/dev/null").log();
}

at::Tensor as_tensor(const ParameterSet& p, const std::string& name) {
  const Tensor& t = p.at(name);
  const auto type = t.dtype == DType::F32 ? at::kFloat : t.dtype == DType::BOOL ? at::kBool : at::kLong;
  return at::from_blob(const_cast<uint8_t*>(t.bytes.data()), t.shape, type).clone();
}

// Loads `lerobot_root` with LeRobot, `ours_root` with our reader, and compares the samples.
void expect_same_samples(const std::string& work, const std::string& lerobot_root, const std::string& ours_root,
                         const std::vector<int64_t>& indices) {
  std::string list;
  for (int64_t i : indices) list += " " + std::to_string(i);
  const std::string dump = work + "/dump.safetensors";
  reference(work, "dump " + lerobot_root + " " + dump + list);
  std::map<std::string, std::string> meta;
  const ParameterSet ref = read_safetensors(dump, &meta);
  LeRobotDataset ours(ours_root, {}, 50);
  ASSERT_EQ(std::to_string(ours.size()), meta.at("size"));
  for (int64_t i : indices) {
    const std::string k = std::to_string(i) + "/";
    const Sample s = ours.get(i);
    SCOPED_TRACE("sample " + std::to_string(i) + " (LeRobot video backend " + meta.at("video_backend") + ")");
    EXPECT_TRUE(at::equal(s.state, as_tensor(ref, k + "observation.state")));
    EXPECT_TRUE(at::equal(s.action, as_tensor(ref, k + "action")));
    EXPECT_TRUE(at::equal(s.action_is_pad, as_tensor(ref, k + "action_is_pad")));
    EXPECT_EQ(s.task, meta.at(k + "task"));
    EXPECT_EQ(s.episode, as_tensor(ref, k + "episode_index").item<int64_t>());
    EXPECT_EQ(s.frame, as_tensor(ref, k + "frame_index").item<int64_t>());
    // The same cameras first: a reader returning fewer would otherwise compare only those.
    std::set<std::string> ours_cameras, their_cameras;
    for (const auto& [camera, image] : s.images) ours_cameras.insert(camera);
    for (const auto& t : ref.tensors)
      if (t.name.rfind(k + "observation.images.", 0) == 0) their_cameras.insert(t.name.substr(k.size()));
    ASSERT_EQ(ours_cameras, their_cameras);
    for (const auto& [camera, image] : s.images) {
      const at::Tensor theirs = as_tensor(ref, k + camera);
      ASSERT_EQ(image.sizes(), theirs.sizes()) << camera;
      EXPECT_LE((image - theirs).abs().max().item<double>(), 1.0 / 255 + 1e-6) << camera;
    }
  }
}

}  // namespace

TEST(LeRobotParity, RecordedByLeRobotInAv1) {
  const std::string work = test::make_temp_dir("parity-av1");
  reference(work, "write " + work + "/ds libsvtav1");
  expect_same_samples(work, work + "/ds", work + "/ds", {0, 1, 20, 39, 40, 41, 55, 62, 63, 80, 93});
}

TEST(LeRobotParity, RecordedByLeRobotInH264) {
  const std::string work = test::make_temp_dir("parity-h264");
  reference(work, "write " + work + "/ds h264");
  expect_same_samples(work, work + "/ds", work + "/ds", {0, 39, 40, 62, 63, 93});
}

namespace {
std::string write_synth(const std::string& root, const std::string& version, int cameras, const std::string& codec,
                        const SyntheticDatasetSpec& trajectories) {
  lerobot::SynthOptions o;
  o.root = root;
  o.version = version;
  o.cameras = cameras;
  o.codec = codec;
  o.trajectories = trajectories;
  lerobot::write_synthetic_dataset(o);
  return root;
}
}  // namespace

TEST(LeRobotParity, OurSynthV30LoadsInLeRobot) {
  const std::string work = test::make_temp_dir("parity-synth30");
  const std::string root = write_synth(work + "/ds", "v3.0", 2, "av1", {"stack the cubes", 3, 30, 4});
  expect_same_samples(work, root, root, {0, 29, 30, 45, 59, 60, 89});
}

TEST(LeRobotParity, OurV21ReaderAgreesWithLeRobotAfterItsConverter) {
  const std::string work = test::make_temp_dir("parity-synth21");
  const std::string root = write_synth(work + "/ds21", "v2.1", 1, "h264", {"open the drawer", 3, 26, 9});
  fs::copy(root, work + "/converted", fs::copy_options::recursive);
  reference(work, "convert " + work + "/converted");
  expect_same_samples(work, work + "/converted", root, {0, 25, 26, 40, 51, 52, 77});
}

namespace {
// A v2.1 dataset recorded by LeRobot 0.3.3; LeRobot 0.4.4 reads it after its own converter.
void expect_v21_recording_matches(const std::string& codec, const std::vector<int64_t>& indices) {
  const std::string work = test::make_temp_dir("parity-v21-" + codec);
  reference(work, "write " + work + "/ds21 " + codec, true);
  fs::copy(work + "/ds21", work + "/converted", fs::copy_options::recursive);
  reference(work, "convert " + work + "/converted");
  expect_same_samples(work, work + "/converted", work + "/ds21", indices);
}
}  // namespace

TEST(LeRobotParity, RecordedByLeRobotInV21Av1) { expect_v21_recording_matches("libsvtav1", {0, 1, 39, 40, 62, 63, 70, 93}); }

TEST(LeRobotParity, RecordedByLeRobotInV21H264) { expect_v21_recording_matches("h264", {0, 39, 40, 63, 93}); }
