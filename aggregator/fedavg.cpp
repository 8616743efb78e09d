// FedAvg and FedProx on the server. FedProx differs only in configure: its proximal term lives
// in the worker's loss, so the server blends updates exactly as FedAvg does: the global plus the
// weighted mean of the updates (equivalently: the global plus the mean of their deltas).
#include <algorithm>
#include <mutex>
#include <cstring>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "aggregator/strategy.h"
#include "core/util/seed.h"

namespace zk0 {

namespace {

// Sums of updates are kept in fixed point: int64 multiples of 2^-k, k chosen from a bound on
// every parameter of every update (the global's largest plus maxUpdateNorm). Integer addition
// is associative, so the average is the same bit for bit whatever order the updates arrive in: a
// resumed run reproduces the uninterrupted one, and anyone holding the updates can recompute a
// round's global. With parameters below 1 and the default bound (1e4) the resolution is
// 2^-36 ~ 1.5e-11, far below a float32 ulp of any parameter above 1e-3. The price is memory
// traffic: 20 bytes per parameter and update (read 4, read and write an 8-byte sum) where a
// float sum would move 12.
constexpr int kFixedPointBits = 50;  // |w * x| * scale < 2^50: round_to_int below is exact
constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52

// Round to nearest (even) of |v| < 2^51 by the FPU's own rounding: v + 1.5 * 2^52 keeps round(v)
// in the mantissa's low bits. Unlike llrint this vectorises on AVX2.
inline int64_t round_to_int(double v) {
  const double t = v + kRoundMagic;
  int64_t bits, magic;
  std::memcpy(&bits, &t, sizeof bits);
  std::memcpy(&magic, &kRoundMagic, sizeof magic);
  return bits - magic;
}

int aggregation_threads() { return std::max(1, std::min(8, static_cast<int>(std::thread::hardware_concurrency()))); }

template <typename Kernel>
void parallel_for(size_t n, int threads, Kernel&& kernel) {
  if (threads <= 1 || n < (1u << 20)) {
    kernel(size_t{0}, n);
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

// Returns the largest |x| of the span as its float bits: for non-negative floats the bit
// patterns order as the values do, and an integer max vectorises where a float max may not.
__attribute__((target_clones("avx512f", "avx2", "default"))) uint32_t accumulate_span(
    int64_t* __restrict sum, const float* __restrict x, size_t begin, size_t end, double weight_times_scale) {
  uint32_t largest = 0;
  for (size_t i = begin; i < end; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    bits &= 0x7fffffffu;
    largest = bits > largest ? bits : largest;
    sum[i] += round_to_int(weight_times_scale * static_cast<double>(x[i]));
  }
  return largest;
}

float largest_magnitude(const ParameterSet& p) {
  float m = 0;
  for (const auto& t : p.tensors) {
    const float* x = t.as<float>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) m = std::max(m, std::fabs(x[i]));
  }
  return m;
}

}  // namespace

float accumulate_fixed_point(int64_t* sum, const float* x, size_t n, double weight_times_scale, int threads) {
  std::mutex mu;
  uint32_t largest = 0;
  parallel_for(n, threads, [&](size_t begin, size_t end) {
    const uint32_t m = accumulate_span(sum, x, begin, end, weight_times_scale);
    std::lock_guard<std::mutex> lock(mu);
    largest = std::max(largest, m);
  });
  float out;
  std::memcpy(&out, &largest, sizeof out);
  return out;  // NaN bits compare above every finite value: a NaN shows as NaN
}

namespace {

class WeightedAverage final : public Aggregation {
 public:
  WeightedAverage(std::shared_ptr<const ParameterSet> global, double max_delta)
      : keep_(std::move(global)), global_(*keep_) {
    if (!(max_delta > 0) || !std::isfinite(max_delta)) throw std::invalid_argument("fedavg: the bound on deltas must be positive");
    // No accepted update moves a parameter by more than max_delta (its whole L2 norm is at most
    // that), so none exceeds this.
    bound_ = static_cast<double>(largest_magnitude(global_)) + max_delta;
    if (!std::isfinite(bound_)) throw std::invalid_argument("fedavg: the global parameters are not finite");
    scale_ = std::ldexp(1.0, kFixedPointBits - (std::ilogb(bound_) + 1));
    for (const auto& t : global_.tensors) {
      if (t.dtype != DType::F32) throw std::invalid_argument("fedavg: tensor '" + t.name + "' is not F32");
      sums_.emplace_back(static_cast<size_t>(t.numel()), 0);
    }
  }

  void add(const ParameterSet& update, double weight) override {
    if (!(weight > 0) || weight > 1) throw std::invalid_argument("fedavg: weight must be in (0, 1]");
    if (total_weight_ + weight > 1 + 1e-9) throw std::invalid_argument("fedavg: the weights of a round sum to more than 1");
    if (update.tensors.size() != global_.tensors.size()) throw std::invalid_argument("fedavg: update has a different layout");
    for (size_t i = 0; i < global_.tensors.size(); ++i) {
      const Tensor& g = global_.tensors[i];
      const Tensor& x = update.tensors[i];
      if (x.name != g.name || x.shape != g.shape || x.dtype != DType::F32)
        throw std::invalid_argument("fedavg: tensor '" + x.name + "' does not match '" + g.name + "'");
    }
    for (size_t i = 0; i < global_.tensors.size(); ++i) {
      const Tensor& x = update.tensors[i];
      const float largest =
          accumulate_fixed_point(sums_[i].data(), x.as<float>(), sums_[i].size(), weight * scale_, aggregation_threads());
      // The coordinator bounds the update's distance from the global; beyond the bound the fixed
      // point sum could wrap.
      if (!(largest <= bound_))
        throw std::logic_error("fedavg: tensor '" + x.name + "' holds a parameter of magnitude " + std::to_string(largest) +
                               ", beyond the round's bound " + std::to_string(bound_));
    }
    total_weight_ += weight;
    ++count_;
  }

  size_t count() const override { return count_; }

  ParameterSet finish() override {
    if (count_ == 0) throw std::logic_error("fedavg: no updates to aggregate");
    ParameterSet out;
    const double inv = 1.0 / (scale_ * total_weight_);
    for (size_t t = 0; t < global_.tensors.size(); ++t) {
      const Tensor& g = global_.tensors[t];
      Tensor r = make_tensor(g.name, g.dtype, g.shape);
      float* p = r.as<float>();
      const int64_t* sum = sums_[t].data();
      parallel_for(sums_[t].size(), aggregation_threads(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) p[i] = static_cast<float>(static_cast<double>(sum[i]) * inv);
      });
      out.tensors.push_back(std::move(r));
    }
    return out;
  }

 private:
  std::shared_ptr<const ParameterSet> keep_;
  const ParameterSet& global_;
  double bound_;  // on |parameter| in any update of the round
  double scale_;
  std::vector<std::vector<int64_t>> sums_;
  double total_weight_ = 0;
  size_t count_ = 0;
};

class FedAvg final : public Strategy {
 public:
  FedAvg(const FederationSpec& spec)
      : strategy_(spec.strategy),
        local_steps_(spec.training.local_steps),
        seed_(spec.training.seed),
        max_update_norm_(spec.strategy.max_update_norm) {}

  std::string name() const override { return to_string(strategy_.type); }

  RoundPlan configure_round(int round, int attempt, const std::vector<std::string>& available) override {
    RoundPlan plan;
    plan.clients = select_clients(available, strategy_.fraction_fit, strategy_.min_fit_clients, seed_, round, attempt);
    plan.local_steps = local_steps_;
    plan.proximal_mu = strategy_.type == StrategyType::FedProx ? scheduled_mu(strategy_, round, server_losses_) : 0.0;
    return plan;
  }

  std::unique_ptr<Aggregation> begin_aggregation(std::shared_ptr<const ParameterSet> global) override {
    return std::make_unique<WeightedAverage>(std::move(global), max_update_norm_);
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
  double max_update_norm_;
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
