// Written from the papers' formulas: log A_alpha of the sampled Gaussian mechanism as a sum over
// the binomial expansion, exact for integer orders, and for fractional orders the two series of
// Mironov et al. 2019 (Section 3.3) summed until their terms fall below e^-30.
#include "core/privacy/rdp_accountant.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace zk0 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double log_add(double a, double b) {
  const double lo = std::min(a, b), hi = std::max(a, b);
  if (lo == -kInf) return hi;
  return std::log1p(std::exp(lo - hi)) + hi;
}

double log_sub(double a, double b) {  // log(e^a - e^b), a >= b
  if (b == -kInf) return a;
  if (a == b) return -kInf;
  const double d = a - b;
  // expm1 overflows only where e^b is negligible beside e^a.
  return d > 700 ? a : std::log(std::expm1(d)) + b;
}

// log(erfc(x)); erfc underflows past x ~ 26, where its asymptotic series is exact to double
// precision with a few terms.
double log_erfc(double x) {
  if (x < 25) return std::log(std::erfc(x));
  const double r = 1.0 / (x * x);
  const double series = 1.0 - 0.5 * r + 0.75 * r * r - 1.875 * r * r * r + 6.5625 * r * r * r * r;
  return -x * x - std::log(x) - 0.5 * std::log(M_PI) + std::log(series);
}

// log |binom(alpha, i)| and its sign, for real alpha.
double log_abs_binomial(double alpha, double i, int& sign) {
  int s1 = 1, s2 = 1, s3 = 1;
  const double v = lgamma_r(alpha + 1, &s1) - lgamma_r(i + 1, &s2) - lgamma_r(alpha - i + 1, &s3);
  sign = s1 * s2 * s3;
  return v;
}

double log_a_integer(double q, double sigma, int alpha) {
  double log_a = -kInf;
  for (int i = 0; i <= alpha; ++i) {
    int sign = 1;
    const double log_coef = log_abs_binomial(alpha, i, sign) + i * std::log(q) + (alpha - i) * std::log1p(-q);
    log_a = log_add(log_a, log_coef + (static_cast<double>(i) * i - i) / (2 * sigma * sigma));
  }
  return log_a;
}

double log_a_fractional(double q, double sigma, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  for (int i = 0;; ++i) {
    int sign = 1;
    const double log_coef = log_abs_binomial(alpha, i, sign);
    const double j = alpha - i;
    const double log_t0 = log_coef + i * std::log(q) + j * std::log1p(-q);
    const double log_t1 = log_coef + j * std::log(q) + i * std::log1p(-q);
    const double log_e0 = std::log(0.5) + log_erfc((i - z0) / (M_SQRT2 * sigma));
    const double log_e1 = std::log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * sigma));
    const double log_s0 = log_t0 + (static_cast<double>(i) * i - i) / (2 * sigma * sigma) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2 * sigma * sigma) + log_e1;
    if (sign > 0) {
      log_a0 = log_add(log_a0, log_s0);
      log_a1 = log_add(log_a1, log_s1);
    } else {
      log_a0 = log_sub(log_a0, log_s0);
      log_a1 = log_sub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30) break;
  }
  return log_add(log_a0, log_a1);
}

double rdp_at(double q, double sigma, double alpha) {
  if (q == 0) return 0;
  if (sigma == 0) return kInf;
  if (q == 1) return alpha / (2 * sigma * sigma);
  const double log_a = alpha == std::floor(alpha) ? log_a_integer(q, sigma, static_cast<int>(alpha))
                                                  : log_a_fractional(q, sigma, alpha);
  return log_a / (alpha - 1);
}

void check_release(double q, double z) {
  if (!(q > 0 && q <= 1)) throw std::invalid_argument("privacy: the sampling rate must be in (0, 1], got " + std::to_string(q));
  if (!(z >= 0) || !std::isfinite(z)) throw std::invalid_argument("privacy: the noise multiplier must be a non-negative number");
}

}  // namespace

const std::vector<double>& default_rdp_orders() {
  static const std::vector<double> orders = [] {
    std::vector<double> o;
    for (int x = 1; x < 100; ++x) o.push_back(1 + x / 10.0);
    for (int x = 12; x < 64; ++x) o.push_back(x);
    return o;
  }();
  return orders;
}

std::vector<double> sampled_gaussian_rdp(double q, double z, const std::vector<double>& orders) {
  check_release(q, z);
  std::vector<double> out;
  out.reserve(orders.size());
  for (double a : orders) out.push_back(rdp_at(q, z, a));
  return out;
}

PrivacySpent epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp, double delta) {
  if (!(delta > 0 && delta < 1)) throw std::invalid_argument("privacy: delta must be in (0, 1)");
  if (orders.size() != rdp.size()) throw std::invalid_argument("privacy: one RDP value per order");
  PrivacySpent best{kInf, 0};
  for (size_t k = 0; k < orders.size(); ++k) {
    const double a = orders[k];
    const double eps = rdp[k] - (std::log(delta) + std::log(a)) / (a - 1) + std::log((a - 1) / a);
    if (std::isnan(eps)) continue;
    if (eps < best.epsilon) best = {eps, a};
  }
  // Below zero the bound says nothing more than epsilon 0 does.
  if (best.epsilon < 0) best.epsilon = 0;
  return best;
}

double epsilon_after(double q, double z, long steps, double delta, const std::vector<double>& orders) {
  std::vector<double> rdp = sampled_gaussian_rdp(q, z, orders);
  for (double& r : rdp) r *= static_cast<double>(steps);
  return epsilon_from_rdp(orders, rdp, delta).epsilon;
}

double noise_multiplier_for(double target, double delta, double q, long steps, double max_z, const std::vector<double>& orders) {
  if (!(target > 0) || !std::isfinite(target)) throw std::invalid_argument("privacy: the target epsilon must be a positive number");
  if (steps < 1) throw std::invalid_argument("privacy: at least one release to plan for");
  double low = 0, high = 1;
  while (epsilon_after(q, high, steps, delta, orders) > target) {
    low = high;
    high *= 2;
    if (high > max_z)
      throw std::invalid_argument("privacy: no noise multiplier up to " + std::to_string(max_z) + " reaches epsilon " +
                                  std::to_string(target) + " in " + std::to_string(steps) + " releases");
  }
  while (high - low > 1e-6 * high) {
    const double mid = 0.5 * (low + high);
    if (epsilon_after(q, mid, steps, delta, orders) <= target) high = mid;
    else low = mid;
  }
  return high;
}

RdpAccountant::RdpAccountant(std::vector<double> orders) : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {}

void RdpAccountant::record(double q, double z, long steps) {
  const std::vector<double> one = sampled_gaussian_rdp(q, z, orders_);
  for (size_t k = 0; k < rdp_.size(); ++k) rdp_[k] += one[k] * static_cast<double>(steps);
  releases_ += steps;
  if (!history_.empty() && history_.back()["q"] == q && history_.back()["noise_multiplier"] == z)
    history_.back()["steps"] = history_.back()["steps"].get<long>() + steps;
  else
    history_.push_back({{"q", q}, {"noise_multiplier", z}, {"steps", steps}});
}

PrivacySpent RdpAccountant::spent_after(double q, double z, long steps, double delta) const {
  std::vector<double> rdp = sampled_gaussian_rdp(q, z, orders_);
  for (size_t k = 0; k < rdp.size(); ++k) rdp[k] = rdp_[k] + rdp[k] * static_cast<double>(steps);
  return epsilon_from_rdp(orders_, rdp, delta);
}

PrivacySpent RdpAccountant::spent(double delta) const { return epsilon_from_rdp(orders_, rdp_, delta); }

nlohmann::json RdpAccountant::state() const { return {{"orders", orders_}, {"releases", history_}}; }

void RdpAccountant::restore(const nlohmann::json& state) {
  *this = RdpAccountant(state.at("orders").get<std::vector<double>>());
  for (const auto& r : state.at("releases")) record(r.at("q").get<double>(), r.at("noise_multiplier").get<double>(), r.at("steps").get<long>());
}

}  // namespace zk0
