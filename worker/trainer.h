#pragma once
// Local training on one client's data: the dataset stays resident for the whole run, and so
// does the policy it trains on (its own, or a slot of a pool it shares); each round starts from the received global parameters and runs the local steps with the
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
#include "worker/policy_pool.h"
#include "worker/sample_privacy.h"

namespace zk0 {

struct RoundResult {
  ParameterSet update;  // the trainable parameters after local training
  TrainReport report;
  std::vector<double> step_seconds;  // wall time of each local step, data wait included
  double slot_wait_seconds = 0;      // waiting for a policy of a shared pool (report.train_seconds leaves it out)
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
  double clip_norm = 0;  // > 0: the update's delta is scaled down to this L2 norm (client-level privacy)
  std::string base_digest;  // manifest digest of the global parameters trained from
};

class RoundAbandoned : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Under training.privacy with a target: the round would take the client past it. The worker
// stops taking part, reporting why.
class PrivacyBudgetSpent : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LocalTrainer {
 public:
  // state_dir: where the worker keeps what must survive a restart (AdamW's moments under
  // optimizer.state: keep); required then, unused otherwise. `pool`: the policies to train on,
  // shared with other clients of this process (the simulation runtime); null: a pool of one of
  // this client's own, on the device it asks for.
  LocalTrainer(const FederationSpec& spec, const ClientSpec& client, std::string state_dir = "",
               std::shared_ptr<PolicyPool> pool = nullptr);
  ~LocalTrainer();

  void open_dataset();  // throws naming the dataset on any problem
  const Dataset& dataset() const { return *dataset_; }
  const PolicyPool& policies() const { return *pool_; }
  Policy& policy() { return pool_->front_policy(); }
  const Manifest& layout() const { return pool_->layout(); }
  std::string frozen_digest() const { return pool_->frozen_digest(); }

  // Stops with RoundAbandoned at the next step once `abandon` turns true. Calls `progressed`
  // whenever a batch arrives and whenever a step completes (the worker's liveness).
  RoundResult train_round(const ParameterSet& global, const RoundTask& task, const std::atomic<bool>* abandon = nullptr,
                          const std::function<void()>& progressed = [] {});

 private:
  // optimizer.state keep: the moments this client had after its latest round before `round`.
  void restore_optimizer(FlatAdamW& optimizer, int round);
  void save_optimizer(const FlatAdamW& optimizer, const RoundTask& task);

  FederationSpec spec_;
  ClientSpec client_;
  std::shared_ptr<PolicyPool> pool_;
  std::unique_ptr<Dataset> dataset_;
  std::string state_dir_;
  std::unique_ptr<SampleLevelPrivacy> sample_privacy_;  // under training.privacy
};

}  // namespace zk0
