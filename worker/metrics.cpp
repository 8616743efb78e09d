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
                         .Register(r)) {}

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
