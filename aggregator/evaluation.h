#pragma once
// Server-side evaluation of the global policy on a dataset no client trains on. Deterministic:
// the sample indices are fixed once, and each batch's noise and time come from a generator
// seeded by (evaluation seed, batch index), so two evaluations of the same weights agree exactly
// and round-to-round changes are the model's, not the dice's.
#include <functional>
#include <memory>
#include <vector>

#include "core/data/dataset.h"
#include "core/policy/policy.h"

namespace zk0 {

struct EvalResult {
  double loss = 0;  // sample-weighted mean of the per-batch flow-matching losses
  int batches = 0;
  int64_t samples = 0;
  double seconds = 0;
};

class ServerEvaluator {
 public:
  ServerEvaluator(const EvaluationSetSpec& spec, const Policy& policy);
  EvalResult evaluate(Policy& policy);
  // The gradient of evaluate()'s loss (the same batches, noise and time) with respect to the
  // policy's trainable parameters, in their layout (contribution scores' first-order estimate).
  ParameterSet loss_gradient(Policy& policy);
  const Dataset& dataset() const { return *dataset_; }

 private:
  // Every evaluation batch on the policy's device, in order, with its own generator.
  void for_each_batch(Policy& policy, const std::function<void(const Batch&, at::Generator)>& f);

  EvaluationSetSpec spec_;
  std::unique_ptr<Dataset> dataset_;
  std::vector<std::vector<int64_t>> batches_;
};

// One evaluation set's result, by the set's name.
struct SetResult {
  std::string set;
  EvalResult result;
};

// Every set of spec.evaluation, evaluated in the spec's order: the first is the run's server loss.
class EvaluationSets {
 public:
  EvaluationSets(const EvaluationSpec& spec, const Policy& policy);
  std::vector<SetResult> evaluate(Policy& policy);
  // ServerEvaluator::loss_gradient of each set, in the same order.
  std::vector<ParameterSet> loss_gradients(Policy& policy);
  size_t size() const { return evaluators_.size(); }
  const std::string& name(size_t i) const { return names_.at(i); }
  // The first set's: its statistics normalise what the server evaluates and checkpoints.
  const Dataset& primary_dataset() const { return evaluators_.front()->dataset(); }

 private:
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<ServerEvaluator>> evaluators_;
};

}  // namespace zk0
