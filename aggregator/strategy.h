#pragma once
// The strategy interface, after Flower's: configure decides who trains a round and with what,
// aggregate turns verified updates into the next global parameters, evaluate lets the strategy
// react to the server's held-out loss. None of them owns timing or transport; the coordinator
// does. Robust (median, trimmed mean) or private (DP noise) strategies implement the same three.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

struct RoundPlan {
  std::vector<std::string> clients;  // selected, in a stable order
  int local_steps = 0;
  double proximal_mu = 0;
};

// Consumes updates one at a time as they arrive, so memory does not grow with the client count.
class Aggregation {
 public:
  virtual ~Aggregation() = default;
  virtual void add(const ParameterSet& update, double weight) = 0;
  virtual size_t count() const = 0;
  virtual ParameterSet finish() = 0;  // requires count() > 0
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  virtual RoundPlan configure_round(int round, int attempt, const std::vector<std::string>& available) = 0;
  virtual std::unique_ptr<Aggregation> begin_aggregation(const ParameterSet& global) = 0;
  virtual void on_evaluation(int round, double server_loss) = 0;
  // What a checkpoint must hold to resume the strategy exactly.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
};

std::unique_ptr<Strategy> make_strategy(const FederationSpec& spec);

// max(min_clients, ceil(fraction * available)) clients drawn without replacement; the draw
// depends only on (seed, round, attempt), so a resumed run selects as the original would have.
std::vector<std::string> select_clients(const std::vector<std::string>& available, double fraction, int min_clients,
                                        uint64_t seed, int round, int attempt);

// FedProx's mu for a round. constant: mu. step: mu * factor^(floor((round - 1) / every)).
// adaptive (zk0's rule): with three or more server losses L, improvement = (L[-3] - L[-1]) / L[-3];
// below -5% mu * 1.1, below +1% mu * 0.8, otherwise mu.
double scheduled_mu(const StrategySpec& spec, int round, const std::vector<double>& server_losses);

// out = sum_i w_i x_i / sum_i w_i over float32 tensors; the kernel FedAvg runs.
void weighted_accumulate(float* acc, const float* x, size_t n, float w, bool first, int threads);

}  // namespace zk0
