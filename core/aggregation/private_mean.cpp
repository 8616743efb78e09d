// The mean under client-level differential privacy (DP-FedAvg, McMahan et al. 2018): every
// sampled client's delta clipped to C, summed without weights, divided by the expected count m
// rather than the count that arrived (so that one client more or less moves the result by at most
// C/m, whoever drops out), plus Gaussian noise of std z x C/m on every coordinate. Weighting by
// sample counts, as the plain mean does, would let a client's claimed share scale its influence
// past C/m: the weights are dropped here on purpose. Sums are fixed point, as in mean.cpp, so the
// noiseless part does not depend on arrival order.
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>

#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"
#include "core/aggregation/rules.h"
#include "core/privacy/client_level.h"

namespace zk0 {

namespace {

// |C x (delta / |delta|)| <= C per coordinate and update; 2^46 leaves 2^17 updates of headroom
// below int64's range.
constexpr int kFixedPointBits = 46;
// A worker's clipping in float32 may land a hair above C.
constexpr double kWorkerClipTolerance = 1e-5;

class PrivateMean final : public Aggregation {
 public:
  PrivateMean(std::shared_ptr<const ParameterSet> global, std::shared_ptr<PrivateRound> round)
      : keep_(std::move(global)), global_(*keep_), round_(std::move(round)) {
    if (!(round_->clip_norm > 0) || !std::isfinite(round_->clip_norm)) throw std::invalid_argument("private mean: the clip norm must be positive");
    scale_ = std::ldexp(1.0, kFixedPointBits - (std::ilogb(round_->clip_norm) + 1));
    for (const auto& t : global_.tensors) {
      if (t.dtype != DType::F32) throw std::invalid_argument("private mean: tensor '" + t.name + "' is not F32");
      sums_.emplace_back(static_cast<size_t>(t.numel()), 0);
    }
  }

  std::optional<double> accepted_norm_limit() const override {
    if (round_->clip_on == ClipLocation::Worker) return round_->clip_norm * (1 + kWorkerClipTolerance);
    return std::nullopt;
  }

  void note_reported_norm(const std::string& client, double norm) override {
    std::lock_guard<std::mutex> lock(mu_);
    reported_[client] = norm;
  }

  void add(const std::string& client, const ParameterSet& update, double weight) override {
    if (!(weight > 0)) throw std::invalid_argument("private mean: the update of '" + client + "' has no weight");
    check_same_layout(update, global_, "private mean");
    std::string bad;
    const double norm = distance_from(update, global_, bad);
    if (!std::isfinite(norm)) throw std::invalid_argument("private mean: tensor '" + bad + "' of '" + client + "' is not finite");
    const double c = round_->clip_norm;
    double scale = 1, before_clipping = norm;
    if (round_->clip_on == ClipLocation::Worker) {
      if (norm > c * (1 + kWorkerClipTolerance))
        throw std::invalid_argument("private mean: the update of '" + client + "' has norm " + format_number(norm) +
                                    ", above the clip norm " + format_number(c) + " its worker was to clip to");
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = reported_.find(client);
      before_clipping = it == reported_.end() ? norm : it->second;
    } else if (norm > c) {
      scale = c / norm;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!decisions_.emplace(client, UpdateDecision{}).second)
        throw std::invalid_argument("private mean: a second update from client '" + client + "'");
      UpdateDecision& d = decisions_.at(client);
      d.client = client;
      d.norm = norm;
      d.scale = scale;
      if (before_clipping > c) {
        d.outcome = "clipped";
        d.reason = "norm " + format_number(before_clipping) + " above the privacy clip norm " + format_number(c) +
                   (round_->clip_on == ClipLocation::Worker ? " (clipped by the worker)" : "");
      }
    }
    for (size_t i = 0; i < global_.tensors.size(); ++i)
      accumulate_fixed_point_delta(sums_[i].data(), update.tensors[i].as<float>(), global_.tensors[i].as<float>(), sums_[i].size(),
                                   scale * scale_, aggregation_threads());
  }

  size_t count() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return decisions_.size();
  }

  AggregationResult finish() override {
    AggregationResult result;
    size_t unclipped = 0;
    for (auto& [client, d] : decisions_) {
      unclipped += d.outcome == "accepted";
      result.decisions.push_back(d);
    }
    const double m = round_->expected_clients;
    const double inv = 1.0 / (scale_ * m);
    for (size_t t = 0; t < global_.tensors.size(); ++t) {
      const Tensor& g = global_.tensors[t];
      Tensor r = make_tensor(g.name, g.dtype, g.shape);
      float* p = r.as<float>();
      const float* base = g.as<float>();
      const int64_t* sum = sums_[t].data();
      parallel_for(sums_[t].size(), aggregation_threads(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) p[i] = static_cast<float>(static_cast<double>(base[i]) + static_cast<double>(sum[i]) * inv);
      });
      round_->noise->add(p, sums_[t].size(), round_->noise_stddev, round_->stream, static_cast<uint32_t>(t), aggregation_threads());
      result.parameters.tensors.push_back(std::move(r));
    }
    if (round_->count_noise_std > 0) {
      // Centred bits (+-1/2) halve the count's sensitivity; the count's own draw is the stream's
      // tensor index past every parameter tensor.
      const double centred = static_cast<double>(unclipped) - 0.5 * static_cast<double>(decisions_.size());
      const double noisy = centred + round_->count_noise_std * round_->noise->draw(round_->stream, 0xffffffffu, 0);
      round_->noisy_unclipped_fraction = noisy / m + 0.5;
    }
    round_->updates = decisions_.size();
    round_->unclipped = unclipped;
    round_->aggregated = true;
    result.clip_norm = round_->clip_norm;
    return result;
  }

 private:
  std::shared_ptr<const ParameterSet> keep_;
  const ParameterSet& global_;
  std::shared_ptr<PrivateRound> round_;
  double scale_;
  std::vector<std::vector<int64_t>> sums_;
  mutable std::mutex mu_;
  std::map<std::string, UpdateDecision> decisions_;  // client-name order
  std::map<std::string, double> reported_;
};

}  // namespace

std::unique_ptr<Aggregation> make_private_mean(std::shared_ptr<const ParameterSet> global, std::shared_ptr<PrivateRound> round) {
  return std::make_unique<PrivateMean>(std::move(global), std::move(round));
}

}  // namespace zk0
