#pragma once
// Local training on one client's data: the policy, the dataset and the AdamW state stay resident
// for the whole run; each round starts from the received global parameters and runs the local
// steps with the FedProx term mu/2 * ||w - w_global||^2 over the trainable parameters only.
#include <ATen/ATen.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "core/metrics/train_report.h"
#include "core/optim/flat_adamw.h"
#include "core/policy/policy.h"
#include "core/tensor/manifest.h"

namespace zk0 {

struct RoundResult {
  ParameterSet update;  // the trainable parameters after local training
  TrainReport report;
  std::vector<double> step_seconds;  // wall time of each local step, data wait included
};

// Learning rate at `step` (0-based) of a round of `steps`: linear warmup, then constant or cosine
// from lr down to lr * min_lr_ratio at the last step.
double learning_rate_at(const TrainingSpec& spec, int step, int steps);

class RoundAbandoned : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LocalTrainer {
 public:
  LocalTrainer(const FederationSpec& spec, const ClientSpec& client);
  ~LocalTrainer();

  void open_dataset();  // throws naming the dataset on any problem
  const Dataset& dataset() const { return *dataset_; }
  Policy& policy() { return *policy_; }
  const Manifest& layout() const { return layout_; }
  std::string frozen_digest() const { return frozen_digest_; }

  // Stops with RoundAbandoned at the next step once `abandon` turns true.
  RoundResult train_round(const ParameterSet& global, int local_steps, double proximal_mu, uint64_t seed,
                          const std::atomic<bool>* abandon = nullptr);

 private:
  FederationSpec spec_;
  ClientSpec client_;
  at::Device device_;
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<FlatAdamW> optimizer_;  // its flat buffer holds the trainable parameters
  Manifest layout_;
  std::string frozen_digest_;
};

}  // namespace zk0
