#pragma once
// The worker's Prometheus metrics, updated after each round of local training and each transfer.
#include "core/metrics/metrics_server.h"
#include "core/metrics/train_report.h"
#include "core/policy/policy.h"

#include <vector>

namespace zk0 {

struct WorkerMetrics {
  explicit WorkerMetrics(prometheus::Registry& registry);

  prometheus::Gauge& train_loss;
  prometheus::Gauge& policy_loss;
  prometheus::Gauge& proximal_loss;
  prometheus::Gauge& update_norm;
  prometheus::Gauge& samples_per_second;
  prometheus::Histogram& step_duration;
  prometheus::Counter& data_wait;
  prometheus::Counter& rounds_trained;
  prometheus::Family<prometheus::Counter>& transfer_bytes;  // label direction
  prometheus::Family<prometheus::Counter>& transfer_resumes;  // label direction
  prometheus::Family<prometheus::Counter>& transfer_resent_bytes;  // label direction
  prometheus::Family<prometheus::Counter>& prefix_cache_lookups;  // label result: memory_hit, disk_hit, miss
  prometheus::Counter& prefix_cache_corrupt;
  prometheus::Family<prometheus::Gauge>& prefix_cache_bytes;  // label tier: memory, disk

  void trained(const TrainReport& report, const std::vector<double>& step_seconds);
  // The policy's prefix cache as it stands now (counters advance by what changed since the last call).
  void prefix_cache(const PrefixCacheStats& stats);

 private:
  PrefixCacheStats last_cache_;
};

}  // namespace zk0
