#pragma once
// The worker's Prometheus metrics, updated after each round of local training and each transfer.
#include "core/metrics/metrics_server.h"
#include "core/metrics/train_report.h"
#include "core/policy/policy.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace zk0 {

// One client's metrics. `labels` go on every series: {client: NAME} when several clients share
// a registry (the simulation runtime), none when the endpoint's constant labels name the client.
struct WorkerMetrics {
  WorkerMetrics(prometheus::Registry& registry, const std::map<std::string, std::string>& labels = {});

  prometheus::Gauge& train_loss;
  prometheus::Gauge& policy_loss;
  prometheus::Gauge& proximal_loss;
  prometheus::Gauge& update_norm;
  prometheus::Gauge& privacy_epsilon;  // under training.privacy: this client's epsilon so far
  prometheus::Gauge& samples_per_second;
  prometheus::Histogram& step_duration;
  prometheus::Counter& data_wait;
  prometheus::Counter& rounds_trained;
  prometheus::Family<prometheus::Counter>& transfer_bytes;  // label direction
  prometheus::Family<prometheus::Counter>& transfer_resumes;  // label direction
  prometheus::Family<prometheus::Counter>& transfer_resent_bytes;  // label direction
  // Under transport.compression: the update's float32 bytes before encoding and the bytes its
  // encoding takes (label direction), whose ratio the transport dashboard shows.
  prometheus::Family<prometheus::Counter>& payload_bytes;  // labels direction, form: decoded | encoded

  void trained(const TrainReport& report, const std::vector<double>& step_seconds);
  // One transfer under transport.compression: the float32 bytes it stands for, and what travelled.
  void payload(const char* direction, uint64_t decoded_bytes, uint64_t encoded_bytes);
  // {direction: d} and this client's labels.
  std::map<std::string, std::string> direction(const char* d) const;

 private:
  std::map<std::string, std::string> labels_;
};

// The prefix cache's metrics, once per process: the cache is shared by every client in it.
class PrefixCacheMetrics {
 public:
  explicit PrefixCacheMetrics(prometheus::Registry& registry);
  // The cache as it stands now (counters advance by what changed since the last call).
  void update(const PrefixCacheStats& stats);

 private:
  prometheus::Family<prometheus::Counter>& lookups_;  // label result: memory_hit, disk_hit, miss
  prometheus::Counter& corrupt_;
  prometheus::Family<prometheus::Gauge>& bytes_;  // label tier: memory, disk
  std::mutex mu_;
  PrefixCacheStats last_;
};

}  // namespace zk0
