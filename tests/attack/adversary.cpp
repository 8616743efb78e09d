#include "attack/adversary.h"

#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>

#include "core/aggregation/deltas.h"

namespace zk0::test {

namespace {

struct Named {
  const char* name;
  AttackKind kind;
};
constexpr Named kAttacks[] = {{"signFlip", AttackKind::SignFlip},
                              {"gaussian", AttackKind::Gaussian},
                              {"scale", AttackKind::Scale},
                              {"aLittleIsEnough", AttackKind::ALittleIsEnough},
                              {"innerProduct", AttackKind::InnerProduct}};

double default_strength(AttackKind kind, int clients, int byzantine) {
  switch (kind) {
    case AttackKind::SignFlip: return 10;  // beyond n - f: the mean steps backwards
    case AttackKind::Gaussian: return 30;
    case AttackKind::Scale: return 100;
    case AttackKind::ALittleIsEnough: return a_little_is_enough_z(clients, byzantine);
    case AttackKind::InnerProduct: return 0.1;  // Xie et al.'s choice against Krum and the median
  }
  return 0;
}

// One output tensor per input tensor, each coordinate from `f(index into the flat tensors)`.
ParameterSet map_coordinates(const ParameterSet& layout, const std::function<float(size_t tensor, int64_t i)>& f) {
  ParameterSet out;
  for (size_t t = 0; t < layout.tensors.size(); ++t) {
    const Tensor& src = layout.tensors[t];
    Tensor dst = make_tensor(src.name, DType::F32, src.shape);
    float* d = dst.as<float>();
    for (int64_t i = 0; i < src.numel(); ++i) d[i] = f(t, i);
    out.tensors.push_back(std::move(dst));
  }
  return out;
}

float coordinate(const ParameterSet& p, size_t tensor, int64_t i) { return p.tensors[tensor].as<float>()[i]; }

}  // namespace

std::string attack_name(AttackKind kind) {
  for (const auto& a : kAttacks)
    if (a.kind == kind) return a.name;
  return "?";
}

Attack parse_attack(const std::string& text, int clients, int byzantine) {
  const size_t colon = text.find(':');
  const std::string name = text.substr(0, colon);
  for (const auto& a : kAttacks) {
    if (name != a.name) continue;
    Attack attack{a.kind, default_strength(a.kind, clients, byzantine)};
    if (colon != std::string::npos) {
      try {
        attack.strength = std::stod(text.substr(colon + 1));
      } catch (const std::exception&) {
        throw std::invalid_argument("attack " + text + ": the strength after ':' is not a number");
      }
    }
    return attack;
  }
  std::string valid;
  for (const auto& a : kAttacks) valid += std::string(valid.empty() ? "" : ", ") + a.name;
  throw std::invalid_argument("attack " + text + ": unknown; one of " + valid + " (optionally NAME:STRENGTH)");
}

double a_little_is_enough_z(int clients, int byzantine) {
  const int supporters = clients / 2 + 1 - byzantine;
  const double p = static_cast<double>(clients - supporters) / clients;
  double lo = -10, hi = 10;  // Phi^-1(p) by bisection on the normal CDF
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

ParameterSet subtract(const ParameterSet& a, const ParameterSet& b) {
  check_same_layout(a, b, "subtract");
  return map_coordinates(a, [&](size_t t, int64_t i) { return coordinate(a, t, i) - coordinate(b, t, i); });
}

ParameterSet add(const ParameterSet& a, const ParameterSet& b) {
  check_same_layout(a, b, "add");
  return map_coordinates(a, [&](size_t t, int64_t i) { return coordinate(a, t, i) + coordinate(b, t, i); });
}

DeltaMoments delta_moments(const std::vector<ParameterSet>& deltas) {
  if (deltas.empty()) throw std::invalid_argument("delta_moments: no deltas");
  for (const auto& d : deltas) check_same_layout(d, deltas[0], "delta_moments");
  const double n = static_cast<double>(deltas.size());
  DeltaMoments m;
  m.mean = map_coordinates(deltas[0], [&](size_t t, int64_t i) {
    double sum = 0;
    for (const auto& d : deltas) sum += coordinate(d, t, i);
    return static_cast<float>(sum / n);
  });
  m.stddev = map_coordinates(deltas[0], [&](size_t t, int64_t i) {
    const double mean = coordinate(m.mean, t, i);
    double sq = 0;
    for (const auto& d : deltas) sq += (coordinate(d, t, i) - mean) * (coordinate(d, t, i) - mean);
    return static_cast<float>(std::sqrt(sq / n));
  });
  return m;
}

ParameterSet malicious_delta(const Attack& attack, const ParameterSet& own_delta, const DeltaMoments* honest,
                             uint64_t seed) {
  if (attack.needs_honest_updates() && !honest)
    throw std::invalid_argument("attack " + attack_name(attack.kind) + " needs the honest updates' moments");
  const double k = attack.strength;
  switch (attack.kind) {
    case AttackKind::SignFlip:
      return map_coordinates(own_delta, [&](size_t t, int64_t i) { return static_cast<float>(-k * coordinate(own_delta, t, i)); });
    case AttackKind::Scale:
      return map_coordinates(own_delta, [&](size_t t, int64_t i) { return static_cast<float>(k * coordinate(own_delta, t, i)); });
    case AttackKind::Gaussian: {
      double sq = 0;
      for (const auto& t : own_delta.tensors)
        for (int64_t i = 0; i < t.numel(); ++i) sq += double(t.as<float>()[i]) * t.as<float>()[i];
      const double rms = std::sqrt(sq / std::max<int64_t>(1, own_delta.total_elements()));
      std::mt19937_64 rng(seed);
      std::normal_distribution<double> noise(0.0, k * rms);
      return map_coordinates(own_delta, [&](size_t, int64_t) { return static_cast<float>(noise(rng)); });
    }
    case AttackKind::ALittleIsEnough:
      return map_coordinates(own_delta, [&](size_t t, int64_t i) {
        return static_cast<float>(coordinate(honest->mean, t, i) - k * coordinate(honest->stddev, t, i));
      });
    case AttackKind::InnerProduct:
      return map_coordinates(own_delta, [&](size_t t, int64_t i) { return static_cast<float>(-k * coordinate(honest->mean, t, i)); });
  }
  throw std::logic_error("malicious_delta: unhandled attack");
}

}  // namespace zk0::test
