#include "aggregator/metrics.h"

namespace zk0 {

AggregatorMetrics::AggregatorMetrics(prometheus::Registry& r)
    : round(add_gauge(r, "zk0_aggregator_round", "Round in progress (0 before the first)")),
      rounds_total_planned(add_gauge(r, "zk0_aggregator_rounds", "Rounds the run is to complete")),
      rounds_completed(add_counter(r, "zk0_aggregator_rounds_completed_total", "Rounds aggregated")),
      round_duration(add_duration_histogram(r, "zk0_aggregator_round_duration_seconds", "Wall time of a round, all attempts")),
      clients_connected(add_gauge(r, "zk0_aggregator_clients_connected", "Clients registered and heartbeating")),
      clients_selected(add_gauge(r, "zk0_aggregator_clients_selected", "Clients selected for the round in progress")),
      updates_accepted(add_counter(r, "zk0_aggregator_updates_accepted_total", "Updates verified and aggregated")),
      updates_rejected(prometheus::BuildCounter()
                           .Name("zk0_aggregator_updates_rejected_total")
                           .Help("Updates refused, by reason")
                           .Register(r)),
      updates_discarded(prometheus::BuildCounter()
                            .Name("zk0_aggregator_updates_discarded_total")
                            .Help("Valid updates a robust rule left out of the aggregate, by rule")
                            .Register(r)),
      updates_clipped(add_counter(r, "zk0_aggregator_updates_clipped_total", "Updates scaled down to the round's clip norm")),
      transfer_bytes(prometheus::BuildCounter()
                         .Name("zk0_aggregator_transfer_bytes_total")
                         .Help("Parameter bytes moved, by direction (download: to workers, upload: from workers)")
                         .Register(r)),
      transfer_duration(prometheus::BuildHistogram()
                            .Name("zk0_aggregator_transfer_duration_seconds")
                            .Help("Duration of one parameter transfer, by direction")
                            .Register(r)),
      aggregation_duration(add_duration_histogram(r, "zk0_aggregator_aggregation_duration_seconds", "Time to finish an aggregation")),
      transfer_resumes(prometheus::BuildCounter()
                           .Name("zk0_aggregator_transfer_resumes_total")
                           .Help("Transfers continued from the last verified chunk after their stream broke, by direction")
                           .Register(r)),
      update_staleness(prometheus::BuildHistogram()
                           .Name("zk0_aggregator_update_staleness")
                           .Help("Asynchronous rounds: how many global versions behind each accepted update was")
                           .Register(r)
                           .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32})),
      stragglers(add_counter(r, "zk0_aggregator_stragglers_total", "Selected clients without an update at the round deadline")),
      dropouts(add_counter(r, "zk0_aggregator_dropouts_total", "Selected clients that stopped heartbeating mid-round")),
      client_failures(add_counter(r, "zk0_aggregator_client_failures_total", "Failures reported by workers")),
      server_eval_loss(add_gauge(r, "zk0_aggregator_server_eval_loss",
                                 "Latest loss of the global policy on the run's held-out dataset (its first evaluation set)")),
      evaluation_set_loss(prometheus::BuildGauge()
                              .Name("zk0_aggregator_evaluation_set_loss")
                              .Help("Latest loss of the global policy on each evaluation set (spec.evaluation.sets), by set")
                              .Register(r)),
      privacy_epsilon(add_gauge(r, "zk0_aggregator_privacy_epsilon", "Epsilon spent so far under strategy.privacy, at its delta (RDP accountant)")),
      checkpoint_timestamp(add_gauge(r, "zk0_aggregator_checkpoint_timestamp_seconds", "Unix time of the latest checkpoint")),
      checkpoint_bytes(add_gauge(r, "zk0_aggregator_checkpoint_bytes", "Size of the latest checkpoint's weights")),
      hash_failures(add_counter(r, "zk0_aggregator_hash_failures_total", "Transfers failing a CRC32C or SHA-256 check")),
      registrations_refused(prometheus::BuildCounter()
                                .Name("zk0_aggregator_registrations_refused_total")
                                .Help("Registrations refused, by reason (identity_mismatch: a certificate naming another client)")
                                .Register(r)),
      contribution_score(prometheus::BuildGauge()
                             .Name("zk0_aggregator_client_contribution_score")
                             .Help("How much a client's updates lowered the server's loss on an evaluation set, summed over the rounds scored, by estimate and set")
                             .Register(r)) {
  // Every label value starts at 0, so dashboards and alerts see the series before the first event.
  for (const char* reason : kUpdateRejectionReasons) updates_rejected.Add({{"reason", reason}});
  for (const char* reason : kRegistrationRefusalReasons) registrations_refused.Add({{"reason", reason}});
  for (const char* rule : kDiscardingRules) updates_discarded.Add({{"rule", rule}});
  for (const char* direction : {"upload", "download"}) {
    transfer_bytes.Add({{"direction", direction}});
    transfer_resumes.Add({{"direction", direction}});
    transfer_duration.Add({{"direction", direction}}, duration_buckets());
  }
}

void AggregatorMetrics::rejected(const std::string& reason) {
  updates_rejected.Add({{"reason", reason}}).Increment();
  if (reason == "chunk_checksum" || reason == "tensor_hash") hash_failures.Increment();
}

void AggregatorMetrics::registration_refused(const std::string& reason) {
  registrations_refused.Add({{"reason", reason}}).Increment();
}

void AggregatorMetrics::transferred(const std::string& direction, double bytes, double seconds) {
  transfer_bytes.Add({{"direction", direction}}).Increment(bytes);
  transfer_duration.Add({{"direction", direction}}, duration_buckets()).Observe(seconds);
}

}  // namespace zk0
