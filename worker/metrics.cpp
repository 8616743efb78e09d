#include "worker/metrics.h"

namespace zk0 {

namespace {

std::map<std::string, std::string> with(std::map<std::string, std::string> labels, const char* key, const char* value) {
  labels[key] = value;
  return labels;
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& r, const std::map<std::string, std::string>& labels)
    : train_loss(prometheus::BuildGauge().Name("zk0_worker_train_loss").Help("Mean loss (policy + proximal) of the latest round").Register(r).Add(labels)),
      policy_loss(prometheus::BuildGauge().Name("zk0_worker_policy_loss").Help("Mean flow-matching loss of the latest round").Register(r).Add(labels)),
      proximal_loss(prometheus::BuildGauge().Name("zk0_worker_proximal_loss").Help("Mean FedProx term of the latest round").Register(r).Add(labels)),
      update_norm(prometheus::BuildGauge()
                      .Name("zk0_worker_update_norm")
                      .Help("L2 distance of the latest update from its global parameters")
                      .Register(r)
                      .Add(labels)),
      privacy_epsilon(prometheus::BuildGauge()
                          .Name("zk0_worker_privacy_epsilon")
                          .Help("This client's epsilon so far under training.privacy (DP-SGD), at its delta")
                          .Register(r)
                          .Add(labels)),
      samples_per_second(prometheus::BuildGauge().Name("zk0_worker_samples_per_second").Help("Training throughput of the latest round").Register(r).Add(labels)),
      step_duration(prometheus::BuildHistogram()
                        .Name("zk0_worker_local_step_duration_seconds")
                        .Help("Wall time of one local optimizer step, data wait included")
                        .Register(r)
                        .Add(labels, duration_buckets())),
      data_wait(prometheus::BuildCounter().Name("zk0_worker_data_wait_seconds_total").Help("Time the trainer waited for batches").Register(r).Add(labels)),
      rounds_trained(prometheus::BuildCounter().Name("zk0_worker_rounds_trained_total").Help("Rounds of local training").Register(r).Add(labels)),
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
      payload_bytes(prometheus::BuildCounter()
                        .Name("zk0_worker_payload_bytes_total")
                        .Help("Update bytes under transport.compression, by direction and form (decoded: float32 before encoding; "
                              "encoded: what the codec made of them)")
                        .Register(r)),
      labels_(labels) {
  for (const char* d : {"download", "upload"}) {
    transfer_bytes.Add(direction(d));
    transfer_resumes.Add(direction(d));
    transfer_resent_bytes.Add(direction(d));
  }
}

void WorkerMetrics::payload(const char* d, uint64_t decoded_bytes, uint64_t encoded_bytes) {
  payload_bytes.Add(with(direction(d), "form", "decoded")).Increment(static_cast<double>(decoded_bytes));
  payload_bytes.Add(with(direction(d), "form", "encoded")).Increment(static_cast<double>(encoded_bytes));
}

std::map<std::string, std::string> WorkerMetrics::direction(const char* d) const { return with(labels_, "direction", d); }

void WorkerMetrics::trained(const TrainReport& report, const std::vector<double>& step_seconds) {
  train_loss.Set(report.loss);
  policy_loss.Set(report.policy_loss);
  proximal_loss.Set(report.proximal_loss);
  update_norm.Set(report.update_norm);
  if (report.privacy_epsilon) privacy_epsilon.Set(*report.privacy_epsilon);
  if (report.train_seconds > 0) samples_per_second.Set(static_cast<double>(report.samples) / report.train_seconds);
  for (double s : step_seconds) step_duration.Observe(s);
  data_wait.Increment(report.data_seconds);
  rounds_trained.Increment();
}

PrefixCacheMetrics::PrefixCacheMetrics(prometheus::Registry& r)
    : lookups_(prometheus::BuildCounter()
                   .Name("zk0_worker_prefix_cache_lookups_total")
                   .Help("Frozen-prefix cache lookups, by result (memory_hit, disk_hit, miss)")
                   .Register(r)),
      corrupt_(add_counter(r, "zk0_worker_prefix_cache_corrupt_entries_total",
                           "Disk cache entries that failed their checksum or key check, dropped and recomputed")),
      bytes_(prometheus::BuildGauge()
                 .Name("zk0_worker_prefix_cache_bytes")
                 .Help("Bytes the frozen-prefix cache holds, by tier (memory, disk)")
                 .Register(r)) {
  for (const char* result : {"memory_hit", "disk_hit", "miss"}) lookups_.Add({{"result", result}});
  for (const char* tier : {"memory", "disk"}) bytes_.Add({{"tier", tier}});
}

void PrefixCacheMetrics::update(const PrefixCacheStats& s) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto advance = [&](const char* result, int64_t now, int64_t before) {
    if (now > before) lookups_.Add({{"result", result}}).Increment(static_cast<double>(now - before));
  };
  advance("memory_hit", s.memory_hits, last_.memory_hits);
  advance("disk_hit", s.disk_hits, last_.disk_hits);
  advance("miss", s.misses, last_.misses);
  if (s.corrupt_entries > last_.corrupt_entries) corrupt_.Increment(static_cast<double>(s.corrupt_entries - last_.corrupt_entries));
  bytes_.Add({{"tier", "memory"}}).Set(static_cast<double>(s.memory_bytes));
  bytes_.Add({{"tier", "disk"}}).Set(static_cast<double>(s.disk_bytes));
  last_ = s;
}

}  // namespace zk0
