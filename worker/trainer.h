#pragma once
// Local training on one client's data: the policy and the dataset stay resident for the whole
// run; each round starts from the received global parameters and runs the local steps with the
// FedProx term mu/2 * ||w - w_global||^2 over the trainable parameters only. AdamW's moments
// start from zero every round (spec.training.optimizer.state: reset) or continue from this
// client's previous round (keep), persisted in the state directory so that a restarted worker
// continues exactly where it stopped.
#include <ATen/ATen.h>

#include <atomic>
#include <functional>
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

// What the aggregator asked of one round.
struct RoundTask {
  int round = 1;
  int local_steps = 1;
  double proximal_mu = 0;
  uint64_t seed = 0;
  std::string base_digest;  // manifest digest of the global parameters trained from
};

class RoundAbandoned : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LocalTrainer {
 public:
  // state_dir: where the worker keeps what must survive a restart (AdamW's moments under
  // optimizer.state: keep); required then, unused otherwise.
  LocalTrainer(const FederationSpec& spec, const ClientSpec& client, std::string state_dir = "");
  ~LocalTrainer();

  void open_dataset();  // throws naming the dataset on any problem
  const Dataset& dataset() const { return *dataset_; }
  Policy& policy() { return *policy_; }
  const Manifest& layout() const { return layout_; }
  std::string frozen_digest() const { return frozen_digest_; }

  // Stops with RoundAbandoned at the next step once `abandon` turns true. Calls `progressed`
  // whenever a batch arrives and whenever a step completes (the worker's liveness).
  RoundResult train_round(const ParameterSet& global, const RoundTask& task, const std::atomic<bool>* abandon = nullptr,
                          const std::function<void()>& progressed = [] {});

 private:
  // optimizer.state keep: the moments this client had after its latest round before `round`.
  void restore_optimizer(int round);
  void save_optimizer(const RoundTask& task);

  FederationSpec spec_;
  ClientSpec client_;
  at::Device device_;
  std::unique_ptr<Policy> policy_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<FlatAdamW> optimizer_;  // its flat buffer holds the trainable parameters
  Manifest layout_;
  std::string frozen_digest_;
  std::string state_dir_;
};

}  // namespace zk0
