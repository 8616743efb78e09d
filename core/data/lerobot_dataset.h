#pragma once
// A LeRobot dataset on disk (v2.1 or v3.0) behind the Dataset interface: samples as LeRobot's
// LeRobotDataset returns them for SmolVLA (observation at delta 0, an action chunk clamped at the
// episode's end with action_is_pad, the task string, one [3, H, W] image in [0, 1] per camera),
// and MEAN_STD statistics aggregated over the selected episodes from the per-episode stats.
#include <map>
#include <optional>
#include <memory>
#include <mutex>

#include "core/data/dataset.h"
#include "core/lerobot/metadata.h"

namespace zk0 {

namespace lerobot {
class VideoDecoder;
}

class LeRobotDataset final : public Dataset {
 public:
  static constexpr double kToleranceSeconds = 1e-4;  // LeRobot's default tolerance_s
  static constexpr size_t kMaxIdleDecoders = 16;     // bounds open files and decoder memory

  // episodes: a subset of episode indices, or all when empty. images: decode camera frames. Reads every selected episode's
  // rows; videos are decoded on demand. Throws naming the file and episode.
  // `partition`: this client's share of those episodes (core/data/partition.h).
  LeRobotDataset(const std::string& root, const std::vector<int64_t>& episodes, int64_t chunk_size, bool images = true,
                 const std::optional<EpisodePartition>& partition = std::nullopt);
  ~LeRobotDataset() override;

  const DatasetInfo& info() const override { return info_; }
  const std::vector<Episode>& episodes() const override { return episodes_; }
  int64_t size() const override { return states_.size(0); }
  Sample get(int64_t index) override;
  const FeatureStats& state_stats() const override { return state_stats_; }
  const FeatureStats& action_stats() const override { return action_stats_; }

 private:
  at::Tensor image(const std::string& camera, const lerobot::EpisodeMeta& episode, double timestamp);

  lerobot::Metadata meta_;
  DatasetInfo info_;
  std::vector<Episode> episodes_;
  std::vector<const lerobot::EpisodeMeta*> episode_meta_;  // parallel to episodes_
  std::vector<int32_t> episode_of_sample_;
  at::Tensor states_, actions_, timestamps_, task_index_;
  FeatureStats state_stats_, action_stats_;
  // Idle decoders by file. A decode checks one out, so loader threads decode in parallel, and
  // returns it, so the next request for nearby frames of that file continues where it stopped.
  std::mutex decoders_mu_;
  std::multimap<std::string, std::unique_ptr<lerobot::VideoDecoder>> idle_decoders_;
};

}  // namespace zk0
