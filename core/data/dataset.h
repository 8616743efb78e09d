#pragma once
// The dataset interface the worker and the server-side evaluation read batches through. The
// LeRobot reader (v2.1 / v3.0) implements it; so does the synthetic trajectory generator.
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/data/trajectories.h"
#include "core/util/seed.h"
#include "core/spec/federation_spec.h"

namespace zk0 {

// One training sample as SmolVLA-style policies consume it: the observation at delta 0 and the
// action chunk that follows, padded past the episode end by repeating the last action.
struct Sample {
  at::Tensor state;          // [state_dim] float32
  at::Tensor action;         // [chunk, action_dim] float32
  at::Tensor action_is_pad;  // [chunk] bool
  std::string task;
  std::map<std::string, at::Tensor> images;  // camera key -> [3, H, W] float32 in [0, 1]
  std::string source;  // the dataset's DatasetInfo::source
  int64_t episode = 0;
  int64_t frame = 0;
};

struct Batch {
  at::Tensor state;          // [B, state_dim]
  at::Tensor action;         // [B, chunk, action_dim]
  at::Tensor action_is_pad;  // [B, chunk]
  std::vector<std::string> task;
  std::map<std::string, at::Tensor> images;  // camera key -> [B, 3, H, W]
  // "<source>#<episode>:<frame>" per sample: names a sample across steps, rounds and processes
  // (SmolVLA's prefix cache keys on it); empty for batches not read from a dataset.
  std::vector<std::string> sample_ids;

  // 0 for the empty batch Poisson sampling can draw (no tensors at all).
  int64_t size() const { return state.defined() ? state.size(0) : 0; }
  Batch to(const at::Device& device) const;
  // Samples [begin, end), as views.
  Batch slice(int64_t begin, int64_t end) const;
};

struct Episode {
  int64_t index = 0;
  int64_t first_frame = 0;  // global sample index of its first frame
  int64_t length = 0;
  std::string task;
};

// Mean and standard deviation per dimension (MEAN_STD normalisation, as LeRobot).
struct FeatureStats {
  at::Tensor mean;
  at::Tensor std;
};

struct DatasetInfo {
  std::string source;  // DatasetSpec::describe()
  double fps = 30;
  int64_t state_dim = 0;
  int64_t action_dim = 0;
  int64_t chunk_size = 0;
  std::vector<std::string> cameras;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual const DatasetInfo& info() const = 0;
  virtual const std::vector<Episode>& episodes() const = 0;  // after the episode subset
  virtual int64_t size() const = 0;                           // samples (frames) in those episodes
  virtual Sample get(int64_t index) = 0;                      // throws naming the file and episode
  virtual const FeatureStats& state_stats() const = 0;
  virtual const FeatureStats& action_stats() const = 0;
};

// Stacks samples and normalises state and action with the given statistics.
Batch collate(const std::vector<Sample>& samples, const FeatureStats& state_stats,
              const FeatureStats& action_stats);

// Shuffled, epoch-based sampling without replacement (the last partial batch of an epoch is
// dropped, as LeRobot's DataLoader does): the order depends only on the seed and the epoch.
class ShuffledSampler {
 public:
  ShuffledSampler(int64_t dataset_size, int64_t batch_size, uint64_t seed);
  std::vector<int64_t> next_batch();
  int64_t epoch() const { return epoch_; }

 private:
  void reshuffle();
  int64_t dataset_size_, batch_size_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  size_t cursor_ = 0;
  std::vector<int64_t> order_;
};

// Evaluation batches. Full: every sample once, in order. Quick: `batches` batches whose
// indices are spread over all episodes (stratified by position, jittered by the seed).
std::vector<std::vector<int64_t>> evaluation_batches(const Dataset& dataset, EvalMode mode, int batches,
                                                     int batch_size, uint64_t seed);

}  // namespace zk0
