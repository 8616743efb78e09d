#include "core/data/trajectories.h"

#include <cmath>
#include <random>
#include <stdexcept>

namespace zk0 {

const char* const kSo100JointNames[kSo100Joints] = {"shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos",
                                                    "wrist_flex.pos",   "wrist_roll.pos",    "gripper.pos"};

std::vector<Trajectory> generate_trajectories(const SyntheticDatasetSpec& spec, const std::vector<int64_t>& episodes) {
  // The task fixes the goal posture, how fast the arm converges and how it oscillates.
  std::mt19937_64 task_rng(hash_string(spec.task));
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  double goal[kSo100Joints], phase[kSo100Joints];
  for (int64_t j = 0; j < kSo100Joints; ++j) {
    goal[j] = 1.5 * unit(task_rng);
    phase[j] = M_PI * unit(task_rng);
  }
  const double gain = 0.06 + 0.04 * (unit(task_rng) + 1);
  const double amplitude = 0.05 + 0.05 * (unit(task_rng) + 1);
  const double frequency = 0.1 + 0.1 * (unit(task_rng) + 1);

  std::vector<int64_t> selected = episodes;
  if (selected.empty())
    for (int64_t e = 0; e < spec.episodes; ++e) selected.push_back(e);
  std::vector<Trajectory> out;
  for (int64_t e : selected) {
    if (e < 0 || e >= spec.episodes)
      throw std::runtime_error("synthetic:" + spec.task + ": episode " + std::to_string(e) + " does not exist (the dataset has " +
                               std::to_string(spec.episodes) + ")");
    std::mt19937_64 rng(spec.seed * 1000003ull + hash_string(spec.task) + static_cast<uint64_t>(e));
    std::normal_distribution<double> start(0.0, 0.6), jitter(0.0, 0.01);
    double x[kSo100Joints];
    for (double& v : x) v = start(rng);
    Trajectory t;
    t.episode = e;
    for (int64_t step = 0; step < spec.episode_length; ++step) {
      double next[kSo100Joints];
      for (int64_t j = 0; j < kSo100Joints; ++j) {
        next[j] = x[j] + gain * (goal[j] - x[j]) + amplitude * std::sin(frequency * step + phase[j]) * 0.2;
        t.states.push_back(static_cast<float>(x[j] + jitter(rng)));
        t.actions.push_back(static_cast<float>(next[j]));
      }
      std::copy(next, next + kSo100Joints, x);
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace zk0
