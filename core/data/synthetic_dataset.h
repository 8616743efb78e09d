#pragma once
// A LeRobot-shaped dataset generated in memory: SO-100-like 6-joint trajectories that move
// towards a task-specific goal with a task-specific oscillation. Different task strings give
// different dynamics, so clients built on different tasks are non-IID.
#include "core/data/dataset.h"

namespace zk0 {

class SyntheticDataset final : public Dataset {
 public:
  static constexpr int64_t kJoints = 6;  // 5 joints + gripper, as SO-100/SO-101 (see trajectories.h)

  SyntheticDataset(const SyntheticDatasetSpec& spec, const std::vector<int64_t>& episode_subset,
                   int64_t chunk_size, std::string source);

  const DatasetInfo& info() const override { return info_; }
  const std::vector<Episode>& episodes() const override { return episodes_; }
  int64_t size() const override { return states_.size(0); }
  Sample get(int64_t index) override;
  const FeatureStats& state_stats() const override { return state_stats_; }
  const FeatureStats& action_stats() const override { return action_stats_; }

 private:
  DatasetInfo info_;
  std::string task_;
  std::vector<Episode> episodes_;
  std::vector<int64_t> episode_of_frame_;
  at::Tensor states_;   // [N, 6]
  at::Tensor actions_;  // [N, 6]
  FeatureStats state_stats_, action_stats_;
};

}  // namespace zk0
