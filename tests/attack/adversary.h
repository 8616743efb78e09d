#pragma once
// Test-only: what a Byzantine client uploads instead of its honest update. Each attack rewrites
// the update as a delta from the round's global, the way the literature states it:
//   signFlip        -k * own delta
//   gaussian        N(0, (s * rms(own delta))^2) per coordinate
//   scale           k * own delta                                   (x100 by default)
//   aLittleIsEnough mean - z * std of the honest deltas, per coordinate (Baruch et al. 2019)
//   innerProduct    -eps * mean of the honest deltas                 (Xie et al. 2020)
// The last two need the honest clients' updates; the attackers are omniscient: they know every
// client's data and train each honest update themselves (see Colluders).
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/parameter_set.h"

namespace zk0::test {

enum class AttackKind { SignFlip, Gaussian, Scale, ALittleIsEnough, InnerProduct };

struct Attack {
  AttackKind kind = AttackKind::SignFlip;
  double strength = 0;  // k, s, z or eps as above
  bool needs_honest_updates() const { return kind == AttackKind::ALittleIsEnough || kind == AttackKind::InnerProduct; }
};

// "NAME" or "NAME:STRENGTH"; without a strength, the default for a federation of `clients` with
// `byzantine` attackers (aLittleIsEnough: Baruch et al.'s z_max). Throws naming the valid names.
Attack parse_attack(const std::string& text, int clients, int byzantine);
std::string attack_name(AttackKind kind);

// z_max of "A little is enough": the largest z for which s = floor(n/2 + 1) - f honest clients
// are still farther from the mean than the attackers, z = Phi^-1((n - s) / n).
double a_little_is_enough_z(int clients, int byzantine);

// Per-coordinate mean and (population) standard deviation of same-layout F32 deltas.
struct DeltaMoments {
  ParameterSet mean, stddev;
};
DeltaMoments delta_moments(const std::vector<ParameterSet>& deltas);

// The malicious delta. `honest` is required when attack.needs_honest_updates(); `seed` drives the
// Gaussian attack's noise.
ParameterSet malicious_delta(const Attack& attack, const ParameterSet& own_delta, const DeltaMoments* honest,
                             uint64_t seed);

// a - b and a + b over same-layout F32 parameter sets.
ParameterSet subtract(const ParameterSet& a, const ParameterSet& b);
ParameterSet add(const ParameterSet& a, const ParameterSet& b);

}  // namespace zk0::test
