#pragma once
// Server optimisers (FedOpt, Reddi et al. 2021): the round's aggregate minus its global is a
// pseudo-gradient, and the server takes an optimiser step along it instead of jumping to the
// aggregate. They compose with every rule: the rule's (robust) aggregate first, then the step.
#include <nlohmann/json.hpp>

#include "core/spec/federation_spec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

class ServerOptimizer {
 public:
  explicit ServerOptimizer(const ServerOptimizerSpec& spec);

  // global + the step for delta = aggregate - global (same layout, F32). Without an optimiser
  // (type none) the aggregate itself.
  ParameterSet step(const ParameterSet& global, ParameterSet aggregate);

  // What a checkpoint holds to continue bit for bit: the step count, and the moments as tensors
  // named "m/<tensor>" and "v/<tensor>" (only those the method keeps; none before the first step).
  nlohmann::json state() const { return {{"steps", steps_}}; }
  ParameterSet moments() const;
  void restore(const nlohmann::json& state, ParameterSet moments);

 private:
  ServerOptimizerSpec spec_;
  int steps_ = 0;
  std::vector<Tensor> m_, v_;  // one per trainable tensor, in the global's order
  ParameterSet restored_;      // a checkpoint's moments until the next step puts them in order
};

}  // namespace zk0
