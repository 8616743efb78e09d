// FedAvg and FedProx on the server: they differ only in configure (FedProx's proximal term lives
// in the worker's loss); both aggregate with the rule and norm bounding the spec names.
#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "core/aggregation/rules.h"
#include "core/aggregation/server_optimizer.h"
#include "core/privacy/client_level.h"
#include "core/util/seed.h"

namespace zk0 {

namespace {

class FedAvg final : public Strategy {
 public:
  FedAvg(const FederationSpec& spec, std::string scratch_dir)
      : strategy_(spec.strategy),
        local_steps_(spec.training.local_steps),
        seed_(spec.training.seed),
        scratch_dir_(std::move(scratch_dir)),
        server_optimizer_(spec.strategy.server_optimizer) {
    if (spec.strategy.privacy.enabled) privacy_.emplace(spec.strategy.privacy, spec.rounds);
  }

  std::string name() const override {
    std::string n = to_string(strategy_.type);
    if (strategy_.aggregation.rule != AggregationRule::Mean) n += std::string("/") + to_string(strategy_.aggregation.rule);
    if (strategy_.clipping.enabled()) n += "/clipped";
    if (privacy_) n += "/dp";
    if (strategy_.server_optimizer.type != ServerOptimizerType::None)
      n += std::string("/server-") + to_string(strategy_.server_optimizer.type);
    return n;
  }

  RoundPlan configure_round(int round, int attempt, const std::vector<std::string>& available) override {
    RoundPlan plan;
    if (privacy_) {
      plan.clients = privacy_->sample(available, round, attempt);
      if (strategy_.privacy.clip_on == ClipLocation::Worker) plan.clip_norm = privacy_->clip_norm();
    } else {
      plan.clients = select_clients(available, strategy_.fraction_fit, strategy_.min_fit_clients, seed_, round, attempt);
    }
    plan.local_steps = local_steps_;
    plan.proximal_mu = strategy_.type == StrategyType::FedProx ? scheduled_mu(strategy_, round, server_losses_) : 0.0;
    return plan;
  }

  std::unique_ptr<Aggregation> begin_aggregation(std::shared_ptr<const ParameterSet> global) override {
    if (privacy_) return make_private_mean(std::move(global), privacy_->begin_round());
    return make_aggregation(strategy_, std::move(global), scratch_dir_);
  }

  ParameterSet server_step(const ParameterSet& global, ParameterSet aggregate) override {
    if (privacy_) privacy_->commit();  // the aggregate is released from here on
    return server_optimizer_.step(global, std::move(aggregate));
  }

  void on_evaluation(int, double server_loss) override { server_losses_.push_back(server_loss); }

  std::string budget_exhausted() const override { return privacy_ ? privacy_->budget_exhausted() : ""; }
  nlohmann::json privacy_report() const override { return privacy_ ? privacy_->report() : nlohmann::json(); }

  nlohmann::json state() const override {
    nlohmann::json s = {{"server_losses", server_losses_}, {"server_optimizer", server_optimizer_.state()}};
    if (privacy_) s["privacy"] = privacy_->state();
    return s;
  }
  ParameterSet state_tensors() const override { return server_optimizer_.moments(); }
  void restore(const nlohmann::json& state, ParameterSet tensors) override {
    server_losses_ = state.at("server_losses").get<std::vector<double>>();
    server_optimizer_.restore(state.at("server_optimizer"), std::move(tensors));
    if (privacy_) {
      if (!state.contains("privacy")) throw std::invalid_argument("the checkpoint holds no privacy accountant, which spec.strategy.privacy needs");
      privacy_->restore(state.at("privacy"));
    }
  }

 private:
  StrategySpec strategy_;
  int local_steps_;
  uint64_t seed_;
  std::string scratch_dir_;
  ServerOptimizer server_optimizer_;
  std::vector<double> server_losses_;
  std::optional<ClientLevelPrivacy> privacy_;
};

}  // namespace

std::vector<std::string> select_clients(const std::vector<std::string>& available, double fraction, int min_clients,
                                        uint64_t seed, int round, int attempt) {
  std::vector<std::string> pool = available;
  std::sort(pool.begin(), pool.end());
  const size_t wanted = std::min(pool.size(), std::max(static_cast<size_t>(min_clients),
                                                       static_cast<size_t>(std::ceil(fraction * pool.size() - 1e-9))));
  std::mt19937_64 rng(mix_seed(mix_seed(seed, static_cast<uint64_t>(round)), static_cast<uint64_t>(attempt) + 0xC0FFEE));
  std::shuffle(pool.begin(), pool.end(), rng);
  pool.resize(wanted);
  std::sort(pool.begin(), pool.end());
  return pool;
}

double scheduled_mu(const StrategySpec& spec, int round, const std::vector<double>& losses) {
  switch (spec.mu_schedule) {
    case MuScheduleType::Constant: return spec.proximal_mu;
    case MuScheduleType::Step:
      return spec.proximal_mu * std::pow(spec.mu_schedule_factor, (round - 1) / spec.mu_schedule_every_rounds);
    case MuScheduleType::Adaptive: {
      if (losses.size() < 3) return spec.proximal_mu;
      const double first = losses[losses.size() - 3], last = losses.back();
      const double improvement = (first - last) / first;
      if (improvement < -0.05) return spec.proximal_mu * 1.1;  // diverging: pull harder towards the global model
      if (improvement < 0.01) return spec.proximal_mu * 0.8;   // stalled: let clients move more
      return spec.proximal_mu;
    }
  }
  return spec.proximal_mu;
}

std::unique_ptr<Aggregation> make_aggregation(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                              const std::string& scratch_dir) {
  switch (spec.aggregation.rule) {
    case AggregationRule::Mean:
      if (!spec.clipping.enabled()) return make_streaming_mean(std::move(global), spec.max_update_norm);
      return make_clipped_mean(spec, std::move(global), scratch_dir);
    case AggregationRule::Median: return make_median(spec, std::move(global), scratch_dir);
    case AggregationRule::TrimmedMean: return make_trimmed_mean(spec, std::move(global), scratch_dir);
    case AggregationRule::Krum:
    case AggregationRule::MultiKrum: return make_krum(spec, std::move(global), scratch_dir);
    case AggregationRule::Bulyan: return make_bulyan(spec, std::move(global), scratch_dir);
  }
  throw std::invalid_argument("unknown aggregation rule");
}

std::unique_ptr<Strategy> make_strategy(const FederationSpec& spec, const std::string& scratch_dir) {
  return std::make_unique<FedAvg>(spec, scratch_dir);
}

}  // namespace zk0
