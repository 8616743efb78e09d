#pragma once
// SO-100-like 6-joint trajectories that move towards a task-specific goal posture with a
// task-specific oscillation: different task strings give different dynamics (non-IID clients).
// Torch-free: both the in-memory SyntheticDataset and `zk0 dataset synth` use it.
#include <cstdint>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"
#include "core/util/seed.h"

namespace zk0 {

constexpr int64_t kSo100Joints = 6;  // 5 joints + gripper
extern const char* const kSo100JointNames[kSo100Joints];

struct Trajectory {
  int64_t episode = 0;
  std::vector<float> states;   // length x 6: present joint positions
  std::vector<float> actions;  // length x 6: goal positions (the next state), as SO-100 records them
  int64_t length() const { return static_cast<int64_t>(states.size()) / kSo100Joints; }
};

// One trajectory per episode index (all of spec.episodes when `episodes` is empty). Throws
// naming the episode when it is out of range.
std::vector<Trajectory> generate_trajectories(const SyntheticDatasetSpec& spec, const std::vector<int64_t>& episodes);

}  // namespace zk0
