#include "worker/metrics.h"

namespace zk0 {

WorkerMetrics::WorkerMetrics(prometheus::Registry& r)
    : train_loss(add_gauge(r, "zk0_worker_train_loss", "Mean loss (policy + proximal) of the latest round")),
      policy_loss(add_gauge(r, "zk0_worker_policy_loss", "Mean flow-matching loss of the latest round")),
      proximal_loss(add_gauge(r, "zk0_worker_proximal_loss", "Mean FedProx term of the latest round")),
      update_norm(add_gauge(r, "zk0_worker_update_norm", "L2 distance of the latest update from its global parameters")),
      samples_per_second(add_gauge(r, "zk0_worker_samples_per_second", "Training throughput of the latest round")),
      step_duration(add_duration_histogram(r, "zk0_worker_local_step_duration_seconds",
                                           "Wall time of one local optimizer step, data wait included")),
      data_wait(add_counter(r, "zk0_worker_data_wait_seconds_total", "Time the trainer waited for batches")),
      rounds_trained(add_counter(r, "zk0_worker_rounds_trained_total", "Rounds of local training")),
      transfer_bytes(prometheus::BuildCounter()
                         .Name("zk0_worker_transfer_bytes_total")
                         .Help("Parameter bytes moved, by direction")
                         .Register(r)),
      transfer_resumes(prometheus::BuildCounter()
                           .Name("zk0_worker_transfer_resumes_total")
                           .Help("Transfers continued from the last verified chunk after their stream broke, by direction")
                           .Register(r)),
      transfer_resent_bytes(prometheus::BuildCounter()
                                .Name("zk0_worker_transfer_resent_bytes_total")
                                .Help("Parameter bytes that crossed the link more than once, by direction (upload: sent "
                                      "but not kept by the aggregator; download: received, then thrown away)")
                                .Register(r)),
      prefix_cache_lookups(prometheus::BuildCounter()
                               .Name("zk0_worker_prefix_cache_lookups_total")
                               .Help("Frozen-prefix cache lookups, by result (memory_hit, disk_hit, miss)")
                               .Register(r)),
      prefix_cache_corrupt(add_counter(r, "zk0_worker_prefix_cache_corrupt_entries_total",
                                       "Disk cache entries that failed their checksum or key check, dropped and recomputed")),
      prefix_cache_bytes(prometheus::BuildGauge()
                             .Name("zk0_worker_prefix_cache_bytes")
                             .Help("Bytes the frozen-prefix cache holds, by tier (memory, disk)")
                             .Register(r)) {
  for (const char* result : {"memory_hit", "disk_hit", "miss"}) prefix_cache_lookups.Add({{"result", result}});
  for (const char* direction : {"download", "upload"}) {
    transfer_bytes.Add({{"direction", direction}});
    transfer_resumes.Add({{"direction", direction}});
    transfer_resent_bytes.Add({{"direction", direction}});
  }
  for (const char* tier : {"memory", "disk"}) prefix_cache_bytes.Add({{"tier", tier}});
}

void WorkerMetrics::prefix_cache(const PrefixCacheStats& s) {
  const auto advance = [&](const char* result, int64_t now, int64_t before) {
    if (now > before) prefix_cache_lookups.Add({{"result", result}}).Increment(static_cast<double>(now - before));
  };
  advance("memory_hit", s.memory_hits, last_cache_.memory_hits);
  advance("disk_hit", s.disk_hits, last_cache_.disk_hits);
  advance("miss", s.misses, last_cache_.misses);
  if (s.corrupt_entries > last_cache_.corrupt_entries)
    prefix_cache_corrupt.Increment(static_cast<double>(s.corrupt_entries - last_cache_.corrupt_entries));
  prefix_cache_bytes.Add({{"tier", "memory"}}).Set(static_cast<double>(s.memory_bytes));
  prefix_cache_bytes.Add({{"tier", "disk"}}).Set(static_cast<double>(s.disk_bytes));
  last_cache_ = s;
}

void WorkerMetrics::trained(const TrainReport& report, const std::vector<double>& step_seconds) {
  train_loss.Set(report.loss);
  policy_loss.Set(report.policy_loss);
  proximal_loss.Set(report.proximal_loss);
  update_norm.Set(report.update_norm);
  if (report.train_seconds > 0) samples_per_second.Set(static_cast<double>(report.samples) / report.train_seconds);
  for (double s : step_seconds) step_duration.Observe(s);
  data_wait.Increment(report.data_seconds);
  rounds_trained.Increment();
}

}  // namespace zk0
