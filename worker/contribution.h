#pragma once
// What a worker has done so far, as its GET /status tells it (next to /metrics and /healthz on
// the metrics port): a robot owner's view of their part in a run without reading Prometheus
// text. Shared, so that the endpoint may outlive the worker that writes it.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "core/metrics/train_report.h"

namespace zk0 {

class Contribution {
 public:
  Contribution(std::string run, std::string client, int rounds) : run_(std::move(run)), client_(std::move(client)), rounds_(rounds) {}

  void state(const std::string& s);
  void trained(int round, const TrainReport& report);
  void uploaded();

  // {run, client, rounds, state, round, rounds_trained, updates_uploaded, samples_trained,
  // last_loss}; `round` is the last one trained, last_loss absent before the first.
  std::string json() const;

 private:
  const std::string run_, client_;
  const int rounds_;
  mutable std::mutex mu_;
  std::string state_ = "starting";
  int round_ = 0, rounds_trained_ = 0, updates_uploaded_ = 0;
  uint64_t samples_trained_ = 0;
  std::optional<double> last_loss_;
};

}  // namespace zk0
