#pragma once
// The noise multiplier a privacy section asks for, from the spec alone: what `zk0 validate` checks
// and what the aggregator and the workers then use.
#include "core/spec/federation_spec.h"

namespace zk0 {

// The run's total noise multiplier z: spec's noiseMultiplier, or the least that keeps `rounds`
// releases within targetEpsilon. Throws std::invalid_argument, saying why, when none can.
double privacy_noise_multiplier(const PrivacySpec& spec, int rounds);

// The update's share of z when adaptive clipping also releases a noisy count with std sigma_b:
// z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2) (Andrew et al. 2021, Theorem 1); z without it.
double update_noise_multiplier(const PrivacySpec& spec, double z);

}  // namespace zk0
