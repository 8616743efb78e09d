#pragma once
// A small flow-matching action policy without vision: a frozen state encoder (standing in for
// SmolVLA's frozen backbone) and a trainable velocity network over the whole action chunk.
// It runs the complete federated loop on a laptop CPU in minutes.
#include <memory>

#include "core/policy/flow_matching.h"

#include "core/policy/policy.h"

namespace zk0 {

struct FlowMatchingMlpConfig {
  int64_t state_dim = 6;
  int64_t action_dim = 6;
  int64_t chunk_size = 10;
  int64_t encoder_dim = 64;
  int64_t hidden_dim = 256;
  int64_t layers = 3;
  int64_t time_dim = 32;
  int64_t num_steps = 10;  // Euler steps when sampling
  uint64_t init_seed = 0;  // initial weights, frozen ones included, derive from it
  LossReduction reduction = LossReduction::Masked;

  // Reads spec.policy.config; unknown or invalid keys become SpecError problems.
  static FlowMatchingMlpConfig from_json(const nlohmann::json& config);
  nlohmann::json to_json() const;
};

// Default trainable groups: everything except the state encoder.
std::unique_ptr<Policy> make_flow_matching_mlp(const FlowMatchingMlpConfig& config,
                                               const std::vector<std::string>& trainable_groups);

}  // namespace zk0
