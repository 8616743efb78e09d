#include "core/data/synthetic_dataset.h"

#include <cstring>
#include <stdexcept>

#include "core/data/trajectories.h"

namespace zk0 {

SyntheticDataset::SyntheticDataset(const SyntheticDatasetSpec& spec, const std::vector<int64_t>& episode_subset,
                                   int64_t chunk_size, std::string source)
    : task_(spec.task) {
  info_.source = std::move(source);
  info_.fps = 30;
  info_.state_dim = kJoints;
  info_.action_dim = kJoints;
  info_.chunk_size = chunk_size;

  const std::vector<Trajectory> trajectories = generate_trajectories(spec, episode_subset);
  int64_t frames = 0;
  for (const auto& t : trajectories) frames += t.length();
  states_ = at::empty({frames, kJoints}, at::kFloat);
  actions_ = at::empty({frames, kJoints}, at::kFloat);
  int64_t row = 0;
  for (const auto& t : trajectories) {
    episodes_.push_back({t.episode, row, t.length(), spec.task});
    std::memcpy(states_[row].data_ptr<float>(), t.states.data(), t.states.size() * sizeof(float));
    std::memcpy(actions_[row].data_ptr<float>(), t.actions.data(), t.actions.size() * sizeof(float));
    episode_of_frame_.insert(episode_of_frame_.end(), static_cast<size_t>(t.length()), static_cast<int64_t>(episodes_.size()) - 1);
    row += t.length();
  }
  state_stats_ = {states_.mean(0), states_.std(0).clamp_min(1e-6)};
  action_stats_ = {actions_.mean(0), actions_.std(0).clamp_min(1e-6)};
}

Sample SyntheticDataset::get(int64_t index) {
  if (index < 0 || index >= size())
    throw std::out_of_range(info_.source + ": sample " + std::to_string(index) + " out of range [0, " +
                            std::to_string(size()) + ")");
  const Episode& ep = episodes_[static_cast<size_t>(episode_of_frame_[static_cast<size_t>(index)])];
  const int64_t last = ep.first_frame + ep.length - 1;
  Sample out;
  out.state = states_[index].clone();
  const int64_t chunk = info_.chunk_size;
  const int64_t valid = std::min(chunk, last - index + 1);
  out.action = at::empty({chunk, kJoints}, at::kFloat);
  out.action.narrow(0, 0, valid).copy_(actions_.narrow(0, index, valid));
  if (valid < chunk)  // LeRobot clamps to the episode's last frame and flags the padding
    out.action.narrow(0, valid, chunk - valid).copy_(actions_[last].expand({chunk - valid, kJoints}));
  out.action_is_pad = at::arange(chunk) >= valid;
  out.task = task_;
  out.source = info_.source;
  out.episode = ep.index;
  out.frame = index - ep.first_frame;
  return out;
}

}  // namespace zk0
