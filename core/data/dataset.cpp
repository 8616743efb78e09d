#include "core/data/dataset.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>


namespace zk0 {

Batch Batch::slice(int64_t begin, int64_t end) const {
  Batch b;
  b.state = state.slice(0, begin, end);
  b.action = action.slice(0, begin, end);
  b.action_is_pad = action_is_pad.slice(0, begin, end);
  b.task.assign(task.begin() + begin, task.begin() + end);
  if (!sample_ids.empty()) b.sample_ids.assign(sample_ids.begin() + begin, sample_ids.begin() + end);
  for (const auto& [k, v] : images) b.images[k] = v.slice(0, begin, end);
  return b;
}

Batch Batch::to(const at::Device& device) const {
  if (!state.defined()) return *this;
  Batch b;
  b.state = state.to(device);
  b.action = action.to(device);
  b.action_is_pad = action_is_pad.to(device);
  b.task = task;
  b.sample_ids = sample_ids;
  for (const auto& [k, v] : images) b.images[k] = v.to(device);
  return b;
}

Batch collate(const std::vector<Sample>& samples, const FeatureStats& state_stats, const FeatureStats& action_stats) {
  if (samples.empty()) throw std::invalid_argument("collate: no samples");
  std::vector<at::Tensor> states, actions, pads;
  Batch b;
  for (const auto& s : samples) {
    states.push_back(s.state);
    actions.push_back(s.action);
    pads.push_back(s.action_is_pad);
    b.task.push_back(s.task);
    b.sample_ids.push_back(s.source + "#" + std::to_string(s.episode) + ":" + std::to_string(s.frame));
  }
  b.state = (at::stack(states) - state_stats.mean) / state_stats.std;
  b.action = (at::stack(actions) - action_stats.mean) / action_stats.std;
  b.action_is_pad = at::stack(pads);
  for (const auto& [key, _] : samples.front().images) {
    std::vector<at::Tensor> frames;
    for (const auto& s : samples) frames.push_back(s.images.at(key));
    b.images[key] = at::stack(frames);
  }
  return b;
}

ShuffledSampler::ShuffledSampler(int64_t dataset_size, int64_t batch_size, uint64_t seed)
    : dataset_size_(dataset_size), batch_size_(batch_size), seed_(seed) {
  if (batch_size_ > dataset_size_)
    throw std::invalid_argument("batch size " + std::to_string(batch_size_) + " exceeds the dataset's " +
                                std::to_string(dataset_size_) + " samples");
  order_.resize(static_cast<size_t>(dataset_size_));
  reshuffle();
}

void ShuffledSampler::reshuffle() {
  std::iota(order_.begin(), order_.end(), 0);
  std::mt19937_64 rng(mix_seed(seed_, static_cast<uint64_t>(epoch_)));
  std::shuffle(order_.begin(), order_.end(), rng);
  cursor_ = 0;
}

std::vector<int64_t> ShuffledSampler::next_batch() {
  if (cursor_ + static_cast<size_t>(batch_size_) > order_.size()) {
    ++epoch_;
    reshuffle();
  }
  std::vector<int64_t> out(order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
                           order_.begin() + static_cast<std::ptrdiff_t>(cursor_ + batch_size_));
  cursor_ += static_cast<size_t>(batch_size_);
  return out;
}

std::vector<std::vector<int64_t>> evaluation_batches(const Dataset& dataset, EvalMode mode, int batches, int batch_size,
                                                     uint64_t seed) {
  std::vector<std::vector<int64_t>> out;
  const int64_t n = dataset.size();
  if (mode == EvalMode::Full) {
    for (int64_t start = 0; start < n; start += batch_size) {
      std::vector<int64_t> b;
      for (int64_t i = start; i < std::min(n, start + batch_size); ++i) b.push_back(i);
      out.push_back(std::move(b));
    }
    return out;
  }
  // Quick: draw round-robin over episodes, each at a seeded random frame within its stratum, so
  // that a few batches cover beginnings, middles and ends of every episode.
  const auto& episodes = dataset.episodes();
  const int64_t wanted = std::min<int64_t>(n, static_cast<int64_t>(batches) * batch_size);
  std::mt19937_64 rng(mix_seed(seed, 0x5eed));
  std::vector<int64_t> picks;
  picks.reserve(static_cast<size_t>(wanted));
  const int64_t per_episode = (wanted + static_cast<int64_t>(episodes.size()) - 1) / static_cast<int64_t>(episodes.size());
  for (int64_t k = 0; k < per_episode && static_cast<int64_t>(picks.size()) < wanted; ++k) {
    for (const auto& ep : episodes) {
      if (static_cast<int64_t>(picks.size()) >= wanted) break;
      const int64_t stratum = std::max<int64_t>(1, ep.length / per_episode);
      const int64_t lo = std::min(ep.length - 1, k * stratum);
      const int64_t hi = std::min(ep.length - 1, lo + stratum - 1);
      std::uniform_int_distribution<int64_t> pick(lo, hi);
      picks.push_back(ep.first_frame + pick(rng));
    }
  }
  for (size_t i = 0; i < picks.size(); i += static_cast<size_t>(batch_size))
    out.emplace_back(picks.begin() + static_cast<std::ptrdiff_t>(i),
                     picks.begin() + static_cast<std::ptrdiff_t>(std::min(picks.size(), i + static_cast<size_t>(batch_size))));
  return out;
}

}  // namespace zk0
