#include "worker/contribution.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace zk0 {

void Contribution::state(const std::string& s) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = s;
}

void Contribution::trained(int round, const TrainReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  round_ = round;
  ++rounds_trained_;
  samples_trained_ += report.samples;
  if (std::isfinite(report.loss)) last_loss_ = report.loss;
}

void Contribution::uploaded() {
  std::lock_guard<std::mutex> lock(mu_);
  ++updates_uploaded_;
}

std::string Contribution::json() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json j = {{"run", run_},
                      {"client", client_},
                      {"rounds", rounds_},
                      {"state", state_},
                      {"round", round_},
                      {"rounds_trained", rounds_trained_},
                      {"updates_uploaded", updates_uploaded_},
                      {"samples_trained", samples_trained_}};
  if (last_loss_) j["last_loss"] = *last_loss_;
  return j.dump();
}

}  // namespace zk0
