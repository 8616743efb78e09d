#pragma once
// A LeRobot dataset's metadata, codebase versions v2.1 (and v2.0) and v3.0: info.json, the
// episode table, tasks and statistics, with paths resolved to files. Torch-free, so the CLI can
// inspect a dataset without loading a model runtime. See shared/reference/lerobot-dataset.md.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zk0::lerobot {

struct Feature {
  std::string key;
  std::string dtype;  // float32, float64, int64, bool, image, video, string, ...
  std::vector<int64_t> shape;
  std::vector<std::string> names;  // flattened; LeRobot allows lists, nested lists and dicts
  std::string codec;               // video features: info["video.codec"]

  bool is_video() const { return dtype == "video"; }
  int64_t width() const;  // product of shape
};

struct VideoLocation {
  int64_t chunk = 0, file = 0;
  double from_timestamp = 0;  // v3.0: where the episode starts inside the concatenated file
};

struct EpisodeMeta {
  int64_t index = 0;
  int64_t length = 0;
  int64_t from = 0, to = 0;  // global frame range [from, to)
  std::vector<std::string> tasks;
  int64_t data_chunk = 0, data_file = 0;  // v3.0
  std::map<std::string, VideoLocation> videos;  // by camera key
};

// Per-dimension statistics of one feature (LeRobot's min/max/mean/std/count).
struct Stats {
  std::vector<double> min, max, mean, std;
  int64_t count = 0;
};
using StatsByFeature = std::map<std::string, Stats>;

// LeRobot's aggregate_stats: count-weighted mean, pooled variance, min of mins, max of maxes.
Stats aggregate_stats(const std::vector<const Stats*>& parts);

struct Metadata {
  std::string root;
  std::string version;  // "v2.1", "v3.0", ...
  std::string robot_type;
  double fps = 0;
  int64_t total_episodes = 0, total_frames = 0, total_tasks = 0, chunks_size = 1000;
  std::string data_path, video_path;  // Python format templates from info.json
  std::vector<Feature> features;
  std::vector<EpisodeMeta> episodes;  // sorted by index
  std::map<int64_t, std::string> tasks;
  std::map<int64_t, StatsByFeature> episode_stats;  // vector features only

  bool is_v3() const { return version.rfind("v3", 0) == 0; }
  const Feature& feature(const std::string& key) const;  // throws naming the key
  bool has_feature(const std::string& key) const;
  std::vector<std::string> cameras() const;  // video feature keys, sorted
  const EpisodeMeta& episode(int64_t index) const;  // throws naming the index
  std::string data_file(const EpisodeMeta& episode) const;
  std::string video_file(const EpisodeMeta& episode, const std::string& camera) const;
  // Aggregated statistics of `feature` over the given episodes (all when empty).
  Stats stats(const std::string& feature, const std::vector<int64_t>& episodes = {}) const;
};

// Reads and checks the metadata; throws std::runtime_error naming the file and what is wrong.
Metadata load_metadata(const std::string& root);

// Python str.format for the fields LeRobot's path templates use: "{episode_index:06d}", "{video_key}".
std::string format_path(const std::string& pattern, const std::map<std::string, std::string>& strings,
                        const std::map<std::string, int64_t>& numbers);

}  // namespace zk0::lerobot
