#pragma once
// Client-level DP-FedAvg's state across rounds (spec.strategy.privacy): Poisson sampling of the
// clients, the clip norm (fixed, or adapted to a quantile of the update norms), the noise source,
// the accountant and the budget. The round's arithmetic (clip, sum, divide by m, add noise) is
// core/aggregation/private_mean.cpp's; it shares one PrivateRound with this object per round.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/privacy/gaussian_noise.h"
#include "core/privacy/noise_multiplier.h"
#include "core/privacy/rdp_accountant.h"
#include "core/spec/federation_spec.h"

namespace zk0 {

// One round as the private mean needs it, and what it reports back.
struct PrivateRound {
  int round = 0;
  double clip_norm = 0;
  ClipLocation clip_on = ClipLocation::Server;
  double expected_clients = 0;  // m = q x the clients available when the round was sampled
  double noise_stddev = 0;      // z_update x C / m, on every coordinate of the average
  double count_noise_std = 0;   // sigma_b; 0 without adaptive clipping
  double target_quantile = 0;
  uint64_t stream = 0;          // the round's draws from the noise source
  const GaussianNoise* noise = nullptr;
  // Written by the aggregation's finish().
  bool aggregated = false;
  size_t updates = 0, unclipped = 0;
  std::optional<double> noisy_unclipped_fraction;  // adaptive clipping only
};

class ClientLevelPrivacy {
 public:
  ClientLevelPrivacy(const PrivacySpec& spec, int planned_rounds);

  // Poisson sampling: each available client independently with probability q, from the noise
  // source's coins (secret in production). May be empty: the round then releases noise only.
  std::vector<std::string> sample(const std::vector<std::string>& available, int round, int attempt);
  // The round sampled last, for its aggregation.
  std::shared_ptr<PrivateRound> begin_round();
  // The round's aggregate became the global: account for the release and adapt the clip norm.
  void commit();
  // Why the next round may not run (it would take epsilon past targetEpsilon), or "".
  std::string budget_exhausted() const;
  // The last committed round's figures, and epsilon so far, for outputs, status and metrics.
  nlohmann::json report() const;
  double epsilon() const { return accountant_.spent(spec_.delta).epsilon; }
  double delta() const { return spec_.delta; }
  double clip_norm() const { return clip_norm_; }

  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  PrivacySpec spec_;
  double noise_multiplier_;  // z, fixed for the run (kept across a resume that changes `rounds`)
  double clip_norm_;
  GaussianNoise noise_;
  RdpAccountant accountant_;
  int round_ = 0, attempt_ = 0;
  size_t population_ = 0;
  std::shared_ptr<PrivateRound> pending_;
  nlohmann::json last_ = nullptr;
};

}  // namespace zk0
