// The mean rule without norm bounding, FedAvg's and FedProx's (FedProx's proximal term lives in
// the worker's loss): the global plus the weighted mean of the deltas, folded into fixed-point
// sums as updates arrive, so memory holds one sum per parameter whatever the client count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>

#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"
#include "core/aggregation/rules.h"

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

__attribute__((target_clones("avx512f", "avx2", "default"))) void accumulate_delta_span(
    int64_t* __restrict sum, const float* __restrict x, const float* __restrict g, size_t begin, size_t end, double factor) {
  for (size_t i = begin; i < end; ++i)
    sum[i] += round_to_int(factor * (static_cast<double>(x[i]) - static_cast<double>(g[i])));
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

void accumulate_fixed_point_delta(int64_t* sum, const float* x, const float* global, size_t n, double factor, int threads) {
  parallel_for(n, threads, [&](size_t begin, size_t end) { accumulate_delta_span(sum, x, global, begin, end, factor); });
}

namespace {

class WeightedAverage final : public Aggregation {
 public:
  WeightedAverage(std::shared_ptr<const ParameterSet> global, double max_delta)
      : keep_(std::move(global)), global_(*keep_) {
    if (!(max_delta > 0) || !std::isfinite(max_delta)) throw std::invalid_argument("mean: the bound on deltas must be positive");
    // No accepted update moves a parameter by more than max_delta (its whole L2 norm is at most
    // that), so none exceeds this.
    bound_ = static_cast<double>(largest_magnitude(global_)) + max_delta;
    if (!std::isfinite(bound_)) throw std::invalid_argument("mean: the global parameters are not finite");
    scale_ = std::ldexp(1.0, kFixedPointBits - (std::ilogb(bound_) + 1));
    for (const auto& t : global_.tensors) {
      if (t.dtype != DType::F32) throw std::invalid_argument("mean: tensor '" + t.name + "' is not F32");
      sums_.emplace_back(static_cast<size_t>(t.numel()), 0);
    }
  }

  void add(const std::string& client, const ParameterSet& update, double weight) override {
    check_weight("mean", weight, total_weight_);
    check_same_layout(update, global_, "mean");
    if (!clients_.insert(client).second) throw std::invalid_argument("mean: a second update from client '" + client + "'");
    for (size_t i = 0; i < global_.tensors.size(); ++i) {
      const Tensor& x = update.tensors[i];
      const float largest =
          accumulate_fixed_point(sums_[i].data(), x.as<float>(), sums_[i].size(), weight * scale_, aggregation_threads());
      // The coordinator bounds the update's distance from the global; beyond the bound the fixed
      // point sum could wrap.
      if (!(largest <= bound_))
        throw std::logic_error("mean: tensor '" + x.name + "' holds a parameter of magnitude " + std::to_string(largest) +
                               ", beyond the round's bound " + std::to_string(bound_));
    }
    total_weight_ += weight;
    ++count_;
  }

  size_t count() const override { return count_; }

  AggregationResult finish() override {
    if (count_ == 0) throw std::logic_error("mean: no updates to aggregate");
    AggregationResult result;
    for (const auto& c : clients_) result.decisions.push_back({c, "accepted", "", 0, 1});
    ParameterSet& out = result.parameters;
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
    return result;
  }

 private:
  std::shared_ptr<const ParameterSet> keep_;
  const ParameterSet& global_;
  double bound_;  // on |parameter| in any update of the round
  double scale_;
  std::vector<std::vector<int64_t>> sums_;
  double total_weight_ = 0;
  size_t count_ = 0;
  std::set<std::string> clients_;
};

}  // namespace

std::unique_ptr<Aggregation> make_streaming_mean(std::shared_ptr<const ParameterSet> global, double max_delta) {
  return std::make_unique<WeightedAverage>(std::move(global), max_delta);
}

}  // namespace zk0
