#include "core/data/synthetic_dataset.h"

#include <cmath>
#include <random>
#include <stdexcept>

namespace zk0 {

SyntheticDataset::SyntheticDataset(const SyntheticDatasetSpec& spec, const std::vector<int64_t>& episode_subset,
                                   int64_t chunk_size, std::string source)
    : task_(spec.task) {
  info_.source = std::move(source);
  info_.fps = 30;
  info_.state_dim = kJoints;
  info_.action_dim = kJoints;
  info_.chunk_size = chunk_size;

  // The task fixes the goal posture, how fast the arm converges and how it oscillates.
  std::mt19937_64 task_rng(hash_string(spec.task));
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  double goal[kJoints], phase[kJoints];
  for (int64_t j = 0; j < kJoints; ++j) {
    goal[j] = 1.5 * unit(task_rng);
    phase[j] = M_PI * unit(task_rng);
  }
  const double gain = 0.06 + 0.04 * (unit(task_rng) + 1);
  const double amplitude = 0.05 + 0.05 * (unit(task_rng) + 1);
  const double frequency = 0.1 + 0.1 * (unit(task_rng) + 1);

  std::vector<int64_t> selected = episode_subset;
  if (selected.empty())
    for (int64_t e = 0; e < spec.episodes; ++e) selected.push_back(e);
  for (int64_t e : selected)
    if (e >= spec.episodes)
      throw std::runtime_error(info_.source + ": episode " + std::to_string(e) + " does not exist (the dataset has " +
                               std::to_string(spec.episodes) + ")");

  const int64_t length = spec.episode_length;
  const int64_t frames = length * static_cast<int64_t>(selected.size());
  states_ = at::empty({frames, kJoints}, at::kFloat);
  actions_ = at::empty({frames, kJoints}, at::kFloat);
  auto s = states_.accessor<float, 2>();
  auto a = actions_.accessor<float, 2>();
  int64_t row = 0;
  for (int64_t e : selected) {
    std::mt19937_64 rng(spec.seed * 1000003ull + hash_string(spec.task) + static_cast<uint64_t>(e));
    std::normal_distribution<double> start(0.0, 0.6), jitter(0.0, 0.01);
    double x[kJoints];
    for (double& v : x) v = start(rng);
    episodes_.push_back({e, row, length, spec.task});
    for (int64_t t = 0; t < length; ++t, ++row) {
      double next[kJoints];
      for (int64_t j = 0; j < kJoints; ++j) {
        next[j] = x[j] + gain * (goal[j] - x[j]) + amplitude * std::sin(frequency * t + phase[j]) * 0.2;
        s[row][j] = static_cast<float>(x[j] + jitter(rng));
        a[row][j] = static_cast<float>(next[j]);  // SO-100 actions are goal joint positions
      }
      std::copy(next, next + kJoints, x);
      episode_of_frame_.push_back(static_cast<int64_t>(episodes_.size()) - 1);
    }
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
  out.episode = ep.index;
  out.frame = index - ep.first_frame;
  return out;
}

}  // namespace zk0
