#include "core/data/lerobot_dataset.h"

#include "core/data/partition.h"

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/lerobot/parquet_table.h"
#include "core/lerobot/video_decoder.h"

namespace zk0 {

namespace {

constexpr const char* kState = "observation.state";
constexpr const char* kAction = "action";

FeatureStats to_feature_stats(const lerobot::Stats& s) {
  auto tensor = [](const std::vector<double>& v) { return at::tensor(v, at::kDouble).to(at::kFloat); };
  // LeRobot's normaliser divides by std + 1e-8; a constant dimension would otherwise explode.
  return {tensor(s.mean), tensor(s.std) + 1e-8};
}

}  // namespace

LeRobotDataset::LeRobotDataset(const std::string& root, const std::vector<int64_t>& subset, int64_t chunk_size, bool images,
                               const std::optional<EpisodePartition>& partition)
    : meta_(lerobot::load_metadata(root)) {
  for (const char* key : {kState, kAction})
    if (!meta_.has_feature(key)) throw std::runtime_error(root + "/meta/info.json: feature '" + std::string(key) + "' is required");
  info_.source = "path:" + meta_.root;
  info_.fps = meta_.fps;
  info_.state_dim = meta_.feature(kState).width();
  info_.action_dim = meta_.feature(kAction).width();
  info_.chunk_size = chunk_size;
  if (images) info_.cameras = meta_.cameras();

  std::vector<int64_t> selected = subset;
  if (partition) {
    selected = partition_share(episode_tasks(meta_, subset), *partition, root);
  } else if (selected.empty()) {
    for (const auto& e : meta_.episodes) selected.push_back(e.index);
  }
  for (int64_t ep : selected) episode_meta_.push_back(&meta_.episode(ep));  // throws for unknown episodes

  // Rows of the selected episodes, file by file (v3.0 files hold many episodes).
  std::map<std::string, std::vector<const lerobot::EpisodeMeta*>> by_file;
  for (const auto* e : episode_meta_) by_file[meta_.data_file(*e)].push_back(e);
  struct Rows {
    std::vector<float> state, action, timestamp;
    std::vector<int64_t> task;
  };
  std::map<int64_t, Rows> rows;
  for (const auto& [file, eps] : by_file) {
    if (!std::filesystem::exists(file))
      throw std::runtime_error(file + ": missing (episode " + std::to_string(eps.front()->index) + ")");
    const auto t = lerobot::read_parquet_columns(file, {{kState, lerobot::ColumnKind::Float},
                                                        {kAction, lerobot::ColumnKind::Float},
                                                        {"timestamp", lerobot::ColumnKind::Float},
                                                        {"episode_index", lerobot::ColumnKind::Int64},
                                                        {"index", lerobot::ColumnKind::Int64},
                                                        {"task_index", lerobot::ColumnKind::Int64}});
    const auto& state = t.floats.at(kState);
    const auto& action = t.floats.at(kAction);
    if (state.width != info_.state_dim || action.width != info_.action_dim)
      throw std::runtime_error(file + ": state/action widths " + std::to_string(state.width) + "/" + std::to_string(action.width) +
                               " differ from info.json's " + std::to_string(info_.state_dim) + "/" + std::to_string(info_.action_dim));
    std::map<int64_t, const lerobot::EpisodeMeta*> wanted;
    for (const auto* e : eps) wanted[e->index] = e;
    for (int64_t r = 0; r < t.rows; ++r) {
      const int64_t ep = t.ints.at("episode_index")[r];
      auto it = wanted.find(ep);
      if (it == wanted.end()) continue;
      Rows& out = rows[ep];
      const int64_t expected_index = it->second->from + static_cast<int64_t>(out.timestamp.size());
      if (t.ints.at("index")[r] != expected_index)
        throw std::runtime_error(file + ": episode " + std::to_string(ep) + " row with index " + std::to_string(t.ints.at("index")[r]) +
                                 " where " + std::to_string(expected_index) + " was expected");
      out.state.insert(out.state.end(), state.values.begin() + r * state.width, state.values.begin() + (r + 1) * state.width);
      out.action.insert(out.action.end(), action.values.begin() + r * action.width, action.values.begin() + (r + 1) * action.width);
      out.timestamp.push_back(t.floats.at("timestamp").values[r]);
      out.task.push_back(t.ints.at("task_index")[r]);
    }
  }
  int64_t total = 0;
  for (const auto* e : episode_meta_) {
    const auto it = rows.find(e->index);
    const int64_t n = it == rows.end() ? 0 : static_cast<int64_t>(it->second.timestamp.size());
    if (n != e->length)
      throw std::runtime_error(meta_.data_file(*e) + ": episode " + std::to_string(e->index) + " has " + std::to_string(n) +
                               " rows, the episode table says " + std::to_string(e->length));
    episodes_.push_back({e->index, total, e->length, e->tasks.empty() ? "" : e->tasks.front()});
    episode_of_sample_.insert(episode_of_sample_.end(), static_cast<size_t>(n), static_cast<int32_t>(episodes_.size() - 1));
    total += n;
  }
  states_ = at::empty({total, info_.state_dim}, at::kFloat);
  actions_ = at::empty({total, info_.action_dim}, at::kFloat);
  timestamps_ = at::empty({total}, at::kFloat);
  task_index_ = at::empty({total}, at::kLong);
  for (size_t k = 0; k < episode_meta_.size(); ++k) {
    const Rows& r = rows.at(episode_meta_[k]->index);
    const int64_t first = episodes_[k].first_frame, n = episodes_[k].length;
    std::memcpy(states_[first].data_ptr<float>(), r.state.data(), r.state.size() * sizeof(float));
    std::memcpy(actions_[first].data_ptr<float>(), r.action.data(), r.action.size() * sizeof(float));
    std::memcpy(timestamps_.data_ptr<float>() + first, r.timestamp.data(), static_cast<size_t>(n) * sizeof(float));
    std::memcpy(task_index_.data_ptr<int64_t>() + first, r.task.data(), static_cast<size_t>(n) * sizeof(int64_t));
  }
  state_stats_ = to_feature_stats(meta_.stats(kState, selected));
  action_stats_ = to_feature_stats(meta_.stats(kAction, selected));
}

LeRobotDataset::~LeRobotDataset() = default;

at::Tensor LeRobotDataset::image(const std::string& camera, const lerobot::EpisodeMeta& episode, double timestamp) {
  const std::string file = meta_.video_file(episode, camera);
  const double shift = meta_.is_v3() ? episode.videos.at(camera).from_timestamp : 0.0;
  std::unique_ptr<lerobot::VideoDecoder> decoder;
  {
    std::lock_guard<std::mutex> lock(decoders_mu_);
    if (auto it = idle_decoders_.find(file); it != idle_decoders_.end()) {
      decoder = std::move(it->second);
      idle_decoders_.erase(it);
    }
  }
  if (!decoder) {
    if (!std::filesystem::exists(file))
      throw std::runtime_error(file + ": video missing (episode " + std::to_string(episode.index) + ", " + camera + ")");
    decoder = std::make_unique<lerobot::VideoDecoder>(file);
  }
  at::Tensor chw;
  try {
    const lerobot::RgbFrame& frame = decoder->frame_at(shift + timestamp, kToleranceSeconds);
    // uint8 HWC -> float CHW in [0, 1], as LeRobot's decoders return frames.
    const at::Tensor hwc = at::from_blob(const_cast<uint8_t*>(frame.rgb.data()), {frame.height, frame.width, 3}, at::kByte);
    chw = hwc.permute({2, 0, 1}).to(at::kFloat).div_(255.0f).contiguous();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + " (episode " + std::to_string(episode.index) + ", " + camera + ")");
  }
  std::lock_guard<std::mutex> lock(decoders_mu_);
  if (idle_decoders_.size() < kMaxIdleDecoders) idle_decoders_.emplace(file, std::move(decoder));
  return chw;
}

Sample LeRobotDataset::get(int64_t index) {
  if (index < 0 || index >= size())
    throw std::out_of_range(meta_.root + ": sample " + std::to_string(index) + " out of range [0, " + std::to_string(size()) + ")");
  const size_t k = static_cast<size_t>(episode_of_sample_[static_cast<size_t>(index)]);
  const Episode& ep = episodes_[k];
  const int64_t last = ep.first_frame + ep.length - 1;
  Sample out;
  out.state = states_[index].clone();
  const int64_t chunk = info_.chunk_size;
  const int64_t valid = std::min(chunk, last - index + 1);
  out.action = at::empty({chunk, info_.action_dim}, at::kFloat);
  out.action.narrow(0, 0, valid).copy_(actions_.narrow(0, index, valid));
  if (valid < chunk) out.action.narrow(0, valid, chunk - valid).copy_(actions_[last].expand({chunk - valid, info_.action_dim}));
  out.action_is_pad = at::arange(chunk) >= valid;
  const int64_t task = task_index_[index].item<int64_t>();
  const auto t = meta_.tasks.find(task);
  if (t == meta_.tasks.end())
    throw std::runtime_error(meta_.data_file(*episode_meta_[k]) + ": episode " + std::to_string(ep.index) + " uses task_index " +
                             std::to_string(task) + ", which the task table lacks");
  out.task = t->second;
  out.source = info_.source;
  out.episode = ep.index;
  out.frame = index - ep.first_frame;
  const double timestamp = timestamps_[index].item<float>();
  for (const auto& camera : info_.cameras) out.images[camera] = image(camera, *episode_meta_[k], timestamp);
  return out;
}

}  // namespace zk0
