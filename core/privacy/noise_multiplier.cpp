#include "core/privacy/noise_multiplier.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/privacy/rdp_accountant.h"

namespace zk0 {

double privacy_noise_multiplier(const PrivacySpec& spec, int rounds) {
  const double room = spec.adaptive.enabled ? 2 * spec.adaptive.count_noise_std : 0;
  if (spec.noise_multiplier > 0) return spec.noise_multiplier;
  const double z = noise_multiplier_for(spec.target_epsilon, spec.delta, spec.sampling_rate, rounds);
  if (room > 0 && z >= room)
    throw std::invalid_argument("needs noise multiplier " + std::to_string(z) + " over " + std::to_string(rounds) +
                                " rounds, which adaptive clipping's count release (2 x countNoiseStd = " + std::to_string(room) +
                                ") leaves no room for: raise countNoiseStd or epsilon, or clip at a fixed norm");
  return z;
}

double update_noise_multiplier(const PrivacySpec& spec, double z) {
  if (!spec.adaptive.enabled) return z;
  const double count = 2 * spec.adaptive.count_noise_std;
  return std::pow(std::pow(z, -2) - std::pow(count, -2), -0.5);
}

}  // namespace zk0
