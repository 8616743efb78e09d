#pragma once
// The privacy accountant: Rényi DP of the Poisson-sampled Gaussian mechanism (Mironov, Talwar and
// Zhang 2019, the computation TF-Privacy, Opacus and Google's dp_accounting share), composed over
// the rounds that actually ran, and converted to (epsilon, delta) with Balle et al. 2020's
// conversion (their Theorem 21). A round is one release of the noisy average of the clients
// Poisson-sampled with rate q, with noise multiplier z (noise std / sensitivity). Add-or-remove-one
// adjacency: one client (client-level DP) or one sample (sample-level DP) more or less.
#include <nlohmann/json.hpp>
#include <vector>

namespace zk0 {

// Opacus's default orders: 1.1 .. 10.9 in steps of 0.1, then 12 .. 63.
const std::vector<double>& default_rdp_orders();

// RDP of one release at each order (infinite where the mechanism gives none: z = 0).
std::vector<double> sampled_gaussian_rdp(double q, double noise_multiplier, const std::vector<double>& orders);

struct PrivacySpent {
  double epsilon = 0;
  double order = 0;  // the order that gave the smallest epsilon
};

// The tightest epsilon over the orders for the composed RDP `rdp` (one value per order).
PrivacySpent epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp, double delta);

// The epsilon after `steps` releases with (q, z).
double epsilon_after(double q, double noise_multiplier, long steps, double delta,
                     const std::vector<double>& orders = default_rdp_orders());

// The least noise multiplier (to a relative 1e-6) whose epsilon after `steps` releases stays at or
// below target_epsilon, by bisection as Opacus's get_noise_multiplier. Throws
// std::invalid_argument when even `max_noise_multiplier` does not reach the target.
double noise_multiplier_for(double target_epsilon, double delta, double q, long steps, double max_noise_multiplier = 1e4,
                            const std::vector<double>& orders = default_rdp_orders());

// The composed RDP of the releases so far, and what they were: the checkpointed part of a run's
// privacy, so that a resumed run reports the same epsilon as an uninterrupted one.
class RdpAccountant {
 public:
  RdpAccountant() : RdpAccountant(default_rdp_orders()) {}
  explicit RdpAccountant(std::vector<double> orders);

  void record(double q, double noise_multiplier, long steps = 1);
  // The epsilon if (q, z) were released `steps` more times: what a budget check asks first.
  PrivacySpent spent_after(double q, double noise_multiplier, long steps, double delta) const;
  PrivacySpent spent(double delta) const;
  long releases() const { return releases_; }

  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;
  long releases_ = 0;
  nlohmann::json history_ = nlohmann::json::array();  // [{q, z, steps}], merged while (q, z) repeat
};

}  // namespace zk0
