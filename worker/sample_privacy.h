#pragma once
// Sample-level differential privacy in one worker (spec.training.privacy, DP-SGD): the Poisson
// sampling of its frames, the noise on each step's summed clipped gradients, and its own
// accountant, kept in the worker's state directory so that a restarted worker goes on counting
// from where it was (a round repeated after a restart counts again: the computation happened).
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/optim/flat_adamw.h"
#include "core/privacy/gaussian_noise.h"
#include "core/privacy/rdp_accountant.h"
#include "core/spec/federation_spec.h"

namespace zk0 {

class SampleLevelPrivacy {
 public:
  // Throws SpecError, naming the field, when the client's dataset makes the settings impossible
  // (delta at or above 1 / frames, a batch larger than the dataset, a target no z reaches).
  SampleLevelPrivacy(const FederationSpec& spec, int64_t frames, const std::string& state_dir, const std::string& client);

  double sampling_rate() const { return q_; }
  double noise_multiplier() const { return z_; }
  double clip_norm() const { return spec_.clip_norm; }
  int batch_size() const { return batch_size_; }

  // The frames of (round, step): each independently with probability q. May be empty.
  std::vector<int64_t> sample(int round, int step) const;
  // Adds N(0, (z C)^2) to every coordinate of `gradient_sum` (any device), the draws of (round, step).
  void add_noise(at::Tensor& gradient_sum, int round, int step) const;
  // Why a round of `steps` more steps may not run (it would pass targetEpsilon), or "".
  std::string budget_exhausted(int steps) const;
  // A round's steps ran: account for them and keep the accountant on disk.
  void record(int steps);
  double epsilon() const { return accountant_.spent(spec_.delta).epsilon; }

 private:
  SamplePrivacySpec spec_;
  int64_t frames_;
  int batch_size_;
  double q_, z_;
  GaussianNoise noise_;
  RdpAccountant accountant_;
  std::string state_file_;
};

struct PrivateGradient {
  double mean_loss = 0;         // over the step's samples (0 for an empty batch)
  double mean_sample_norm = 0;  // of their gradients before clipping
  int64_t samples = 0;
};

// DP-SGD's gradient of one step, left in the optimizer's gradient buffer: each sample's gradient
// (a forward and backward pass per sample: micro-batches of one, which works for every policy
// and keeps memory at one sample's activations) clipped to C, summed, plus N(0, (z C)^2) per
// coordinate, divided by the expected batch size (batchSize), whatever Poisson sampling drew.
PrivateGradient private_gradient(FlatAdamW& optimizer, const Batch& batch, const SampleLevelPrivacy& privacy,
                                 const std::function<at::Tensor(const Batch&)>& loss_of, int round, int step);

}  // namespace zk0
