// FedAvg and FedProx on the server. FedProx differs only in configure: its proximal term lives
// in the worker's loss, so the server blends updates exactly as FedAvg does.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "aggregator/strategy.h"
#include "core/data/dataset.h"

namespace zk0 {

void weighted_accumulate(float* acc, const float* x, size_t n, float w, bool first, int threads) {
  auto kernel = [=](size_t begin, size_t end) {
    if (first) {
      for (size_t i = begin; i < end; ++i) acc[i] = w * x[i];
    } else {
      for (size_t i = begin; i < end; ++i) acc[i] += w * x[i];
    }
  };
  if (threads <= 1 || n < (1u << 20)) {
    kernel(0, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t per = (n + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  for (int t = 1; t < threads; ++t) {
    const size_t b = std::min(n, per * static_cast<size_t>(t)), e = std::min(n, b + per);
    pool.emplace_back(kernel, b, e);
  }
  kernel(0, std::min(n, per));
  for (auto& th : pool) th.join();
}

namespace {

class WeightedAverage final : public Aggregation {
 public:
  explicit WeightedAverage(const ParameterSet& layout) {
    for (const auto& t : layout.tensors) {
      if (t.dtype != DType::F32) throw std::invalid_argument("fedavg: tensor '" + t.name + "' is not F32");
      sum_.tensors.push_back(make_tensor(t.name, t.dtype, t.shape));
    }
  }

  void add(const ParameterSet& update, double weight) override {
    if (!(weight > 0)) throw std::invalid_argument("fedavg: weight must be positive");
    if (update.tensors.size() != sum_.tensors.size()) throw std::invalid_argument("fedavg: update has a different layout");
    for (size_t i = 0; i < sum_.tensors.size(); ++i) {
      Tensor& acc = sum_.tensors[i];
      const Tensor& x = update.tensors[i];
      if (x.name != acc.name || x.shape != acc.shape || x.dtype != DType::F32)
        throw std::invalid_argument("fedavg: tensor '" + x.name + "' does not match '" + acc.name + "'");
      weighted_accumulate(acc.as<float>(), x.as<float>(), static_cast<size_t>(x.numel()), static_cast<float>(weight),
                          count_ == 0, kThreads);
    }
    total_weight_ += weight;
    ++count_;
  }

  size_t count() const override { return count_; }

  ParameterSet finish() override {
    if (count_ == 0) throw std::logic_error("fedavg: no updates to aggregate");
    const float inv = static_cast<float>(1.0 / total_weight_);
    for (auto& t : sum_.tensors) {
      float* p = t.as<float>();
      const size_t n = static_cast<size_t>(t.numel());
      for (size_t i = 0; i < n; ++i) p[i] *= inv;
    }
    return std::move(sum_);
  }

 private:
  static constexpr int kThreads = 2;
  ParameterSet sum_;
  double total_weight_ = 0;
  size_t count_ = 0;
};

class FedAvg final : public Strategy {
 public:
  FedAvg(const FederationSpec& spec) : strategy_(spec.strategy), local_steps_(spec.training.local_steps), seed_(spec.training.seed) {}

  std::string name() const override { return to_string(strategy_.type); }

  RoundPlan configure_round(int round, int attempt, const std::vector<std::string>& available) override {
    RoundPlan plan;
    plan.clients = select_clients(available, strategy_.fraction_fit, strategy_.min_fit_clients, seed_, round, attempt);
    plan.local_steps = local_steps_;
    plan.proximal_mu = strategy_.type == StrategyType::FedProx ? scheduled_mu(strategy_, round, server_losses_) : 0.0;
    return plan;
  }

  std::unique_ptr<Aggregation> begin_aggregation(const ParameterSet& global) override {
    return std::make_unique<WeightedAverage>(global);
  }

  void on_evaluation(int, double server_loss) override { server_losses_.push_back(server_loss); }

  nlohmann::json state() const override { return {{"server_losses", server_losses_}}; }
  void restore(const nlohmann::json& state) override {
    server_losses_ = state.at("server_losses").get<std::vector<double>>();
  }

 private:
  StrategySpec strategy_;
  int local_steps_;
  uint64_t seed_;
  std::vector<double> server_losses_;
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

std::unique_ptr<Strategy> make_strategy(const FederationSpec& spec) { return std::make_unique<FedAvg>(spec); }

}  // namespace zk0
