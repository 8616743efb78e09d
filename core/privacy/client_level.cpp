#include "core/privacy/client_level.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/util/log.h"

namespace zk0 {

namespace {

// Every draw of a round attempt has its own stream: the noise, the sampling coins, the count's noise.
enum Draw : uint64_t { kUpdateNoise = 0, kSamplingCoins = 1, kCountNoise = 2 };
uint64_t stream_of(int round, int attempt, Draw what) {
  return (static_cast<uint64_t>(round) * 64 + static_cast<uint64_t>(attempt)) * 4 + what;
}

}  // namespace

ClientLevelPrivacy::ClientLevelPrivacy(const PrivacySpec& spec, int planned_rounds)
    : spec_(spec),
      noise_multiplier_(privacy_noise_multiplier(spec, planned_rounds)),
      clip_norm_(spec.adaptive.enabled ? spec.adaptive.initial_norm : spec.clip_norm),
      noise_(spec.insecure_noise_seed ? GaussianNoise::from_seed(*spec.insecure_noise_seed) : GaussianNoise::from_os()) {
  if (spec.insecure_noise_seed)
    log_warn("privacy_noise_seeded", {kv("detail", "strategy.privacy.insecureNoiseSeed makes the noise reproducible: for tests only")});
}

std::vector<std::string> ClientLevelPrivacy::sample(const std::vector<std::string>& available, int round, int attempt) {
  std::vector<std::string> pool = available;
  std::sort(pool.begin(), pool.end());
  round_ = round;
  attempt_ = attempt;
  population_ = pool.size();
  std::vector<std::string> out;
  for (size_t i = 0; i < pool.size(); ++i)
    if (noise_.uniform(stream_of(round, attempt, kSamplingCoins), 0, i) < spec_.sampling_rate) out.push_back(pool[i]);
  return out;
}

std::shared_ptr<PrivateRound> ClientLevelPrivacy::begin_round() {
  auto r = std::make_shared<PrivateRound>();
  r->round = round_;
  r->clip_norm = clip_norm_;
  r->clip_on = spec_.clip_on;
  // With no client available the expected count is 0; the sum is then empty and the release is
  // noise alone, at the scale of one expected client.
  r->expected_clients = std::max(spec_.sampling_rate * static_cast<double>(population_), spec_.sampling_rate);
  r->noise_stddev = update_noise_multiplier(spec_, noise_multiplier_) * clip_norm_ / r->expected_clients;
  r->count_noise_std = spec_.adaptive.enabled ? spec_.adaptive.count_noise_std : 0;
  r->target_quantile = spec_.adaptive.target_quantile;
  r->stream = stream_of(round_, attempt_, kUpdateNoise);
  r->noise = &noise_;
  pending_ = r;
  return r;
}

void ClientLevelPrivacy::commit() {
  if (!pending_ || !pending_->aggregated) throw std::logic_error("privacy: no aggregated round to commit");
  const PrivateRound& r = *pending_;
  accountant_.record(spec_.sampling_rate, noise_multiplier_);
  const double used = clip_norm_;
  if (spec_.adaptive.enabled && r.noisy_unclipped_fraction)
    clip_norm_ *= std::exp(-spec_.adaptive.learning_rate * (*r.noisy_unclipped_fraction - spec_.adaptive.target_quantile));
  const PrivacySpent spent = accountant_.spent(spec_.delta);
  last_ = {{"epsilon", spent.epsilon},
           {"delta", spec_.delta},
           {"rdp_order", spent.order},
           {"releases", accountant_.releases()},
           {"noise_multiplier", noise_multiplier_},
           {"update_noise_multiplier", update_noise_multiplier(spec_, noise_multiplier_)},
           {"sampling_rate", spec_.sampling_rate},
           {"clip_norm", used},
           {"next_clip_norm", clip_norm_},
           {"clip_on", to_string(spec_.clip_on)},
           {"expected_clients", r.expected_clients},
           {"updates", r.updates},
           {"unclipped", r.unclipped},
           {"noise_stddev", r.noise_stddev}};
  if (spec_.target_epsilon > 0) last_["target_epsilon"] = spec_.target_epsilon;
  if (r.noisy_unclipped_fraction) last_["noisy_unclipped_fraction"] = *r.noisy_unclipped_fraction;
  pending_.reset();
}

std::string ClientLevelPrivacy::budget_exhausted() const {
  if (!(spec_.target_epsilon > 0)) return "";
  const double next = accountant_.spent_after(spec_.sampling_rate, noise_multiplier_, 1, spec_.delta).epsilon;
  if (next <= spec_.target_epsilon * (1 + 1e-9)) return "";
  return "privacy budget spent: another round would take epsilon from " + std::to_string(epsilon()) + " to " +
         std::to_string(next) + ", above strategy.privacy.targetEpsilon " + std::to_string(spec_.target_epsilon) +
         " (delta " + std::to_string(spec_.delta) + ")";
}

nlohmann::json ClientLevelPrivacy::report() const {
  if (!last_.is_null()) return last_;
  return {{"epsilon", epsilon()}, {"delta", spec_.delta}, {"releases", accountant_.releases()},
          {"noise_multiplier", noise_multiplier_}, {"sampling_rate", spec_.sampling_rate}, {"next_clip_norm", clip_norm_}};
}

nlohmann::json ClientLevelPrivacy::state() const {
  return {{"noise_multiplier", noise_multiplier_}, {"clip_norm", clip_norm_}, {"accountant", accountant_.state()}, {"last", last_}};
}

void ClientLevelPrivacy::restore(const nlohmann::json& state) {
  noise_multiplier_ = state.at("noise_multiplier").get<double>();
  clip_norm_ = state.at("clip_norm").get<double>();
  accountant_.restore(state.at("accountant"));
  last_ = state.at("last");
}

}  // namespace zk0
