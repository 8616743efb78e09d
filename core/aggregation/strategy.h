#pragma once
// The strategy interface, after Flower's: configure decides who trains a round and with what,
// aggregate turns verified updates into the next global parameters, evaluate lets the strategy
// react to the server's held-out loss. None of them owns timing or transport; the coordinator
// does. The rules (mean, median, trimmed mean, Krum, Multi-Krum, Bulyan) and norm bounding live
// one family per file beside this one; `zk0 aggregate` runs exactly this code on files.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"
#include "core/tensor/parameter_set.h"

namespace zk0 {

struct RoundPlan {
  std::vector<std::string> clients;  // selected, in a stable order
  int local_steps = 0;
  double proximal_mu = 0;
  double clip_norm = 0;  // workers clip their delta to it (privacy with clipOn: worker); 0: they do not
};

// What the rule did with one client's update.
struct UpdateDecision {
  std::string client;
  std::string outcome = "accepted";  // accepted, clipped (scaled down, then used), discarded (not used)
  std::string reason;                // why clipped or discarded, for outputs and logs
  double norm = 0;                   // L2 distance from the round's global as sent; 0 where the rule needs none
  double scale = 1;                  // the clip factor applied, 1 when not clipped
};

struct AggregationResult {
  ParameterSet parameters;
  std::vector<UpdateDecision> decisions;  // one per update, in client-name order
  std::optional<double> clip_norm;        // the round's, with norm bounding
};

// Consumes updates one at a time as they arrive. An update is the client's trainable parameters
// after local training; the coordinator has checked that it is finite and within
// spec.strategy.maxUpdateNorm of the round's global. Its weight is the client's share of the
// samples the round asked for: in (0, 1], summing to at most 1 over a round. The result does not
// depend on the order updates arrive in. Memory does not grow with the client count: the mean
// folds each update into fixed-point sums, the other rules spill deltas to an UpdateStore.
class Aggregation {
 public:
  virtual ~Aggregation() = default;
  virtual void add(const std::string& client, const ParameterSet& update, double weight) = 0;
  virtual size_t count() const = 0;
  // Requires count() > 0 (but the private mean, which releases noise alone from an empty round);
  // throws when the rule cannot run on count().
  virtual AggregationResult finish() = 0;
  // The longest delta the rule accepts at all, checked before add(): the clip norm a worker was
  // told to clip to, under privacy. The coordinator rejects longer updates with a reason.
  virtual std::optional<double> accepted_norm_limit() const { return std::nullopt; }
  // The norm the worker reports its delta had before it clipped it (adaptive clipping counts it).
  virtual void note_reported_norm(const std::string&, double) {}
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  virtual RoundPlan configure_round(int round, int attempt, const std::vector<std::string>& available) = 0;
  // `global`: the round's global parameters, which updates are deltas from.
  virtual std::unique_ptr<Aggregation> begin_aggregation(std::shared_ptr<const ParameterSet> global) = 0;
  // The next global from the round's global and the rule's aggregate: the server optimiser's step
  // (FedOpt) or the aggregate itself. Called once per completed round, after the aggregate
  // proved finite; it advances the optimiser's moments.
  virtual ParameterSet server_step(const ParameterSet& global, ParameterSet aggregate) = 0;
  virtual void on_evaluation(int round, double server_loss) = 0;
  // Under privacy: why the next round may not start (the budget), or "".
  virtual std::string budget_exhausted() const { return ""; }
  // Under privacy: epsilon so far and the last round's figures; null without privacy.
  virtual nlohmann::json privacy_report() const { return nullptr; }

  // What a checkpoint must hold to resume the strategy exactly: JSON, and tensors (the server
  // optimiser's moments, as large as the trainable parameters) beside it.
  virtual nlohmann::json state() const = 0;
  virtual ParameterSet state_tensors() const = 0;
  virtual void restore(const nlohmann::json& state, ParameterSet tensors) = 0;
};

// `scratch_dir`: where rules that need every update at once spill them (created on demand, one
// folder per round below it, removed when the round's aggregation ends).
std::unique_ptr<Strategy> make_strategy(const FederationSpec& spec, const std::string& scratch_dir);

// The rule and norm bounding of spec.strategy, on their own: what make_strategy's
// begin_aggregation returns.
std::unique_ptr<Aggregation> make_aggregation(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                              const std::string& scratch_dir);

// max(min_clients, ceil(fraction * available)) clients drawn without replacement; the draw
// depends only on (seed, round, attempt), so a resumed run selects as the original would have.
std::vector<std::string> select_clients(const std::vector<std::string>& available, double fraction, int min_clients,
                                        uint64_t seed, int round, int attempt);

// FedProx's mu for a round. constant: mu. step: mu * factor^(floor((round - 1) / every)).
// adaptive (zk0's rule): with three or more server losses L, improvement = (L[-3] - L[-1]) / L[-3];
// below -5% mu * 1.1, below +1% mu * 0.8, otherwise mu.
double scheduled_mu(const StrategySpec& spec, int round, const std::vector<double>& server_losses);

// FedAvg's kernel: sum[i] += round(weight_times_scale * x[i]) in int64 fixed point, over
// `threads` threads. Returns max |x[i]| (NaN if any is NaN).
float accumulate_fixed_point(int64_t* sum, const float* x, size_t n, double weight_times_scale, int threads);
// The same for deltas: sum[i] += round(factor * (x[i] - global[i])).
void accumulate_fixed_point_delta(int64_t* sum, const float* x, const float* global, size_t n, double factor, int threads);

}  // namespace zk0
