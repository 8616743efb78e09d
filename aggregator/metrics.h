#pragma once
// The aggregator's Prometheus metrics. The coordinator and the service update them where the
// events happen; nothing is derived at scrape time.
#include <string>

#include "core/metrics/metrics_server.h"

namespace zk0 {

// Why an update can be refused: the transport's verification (TransferError::reason) and the
// coordinator's checks on the update's content and on the worker's signed claims (the ledger's).
constexpr const char* kUpdateRejectionReasons[] = {"bad_manifest", "layout_mismatch", "chunk_checksum", "tensor_hash",
                                                   "incomplete",   "out_of_order",    "no_samples",     "non_finite",
                                                   "stale_base",   "update_norm",     "too_stale",      "unsigned",
                                                   "bad_signature", "claims_mismatch"};

// The rules that discard whole updates (core/aggregation/krum.cpp).
constexpr const char* kDiscardingRules[] = {"krum", "multiKrum", "bulyan"};

// Why a registration can be refused (coordinator.cpp).
constexpr const char* kRegistrationRefusalReasons[] = {"unknown_client", "no_certificate", "no_identity", "identity_mismatch",
                                                       "incompatible_policy", "frozen_digest", "dataset_samples"};

struct AggregatorMetrics {
  explicit AggregatorMetrics(prometheus::Registry& registry);

  prometheus::Gauge& round;
  prometheus::Gauge& rounds_total_planned;
  prometheus::Counter& rounds_completed;
  prometheus::Histogram& round_duration;
  prometheus::Gauge& clients_connected;
  prometheus::Gauge& clients_selected;
  prometheus::Counter& updates_accepted;
  prometheus::Family<prometheus::Counter>& updates_rejected;  // label reason
  prometheus::Family<prometheus::Counter>& updates_discarded;  // label rule
  prometheus::Counter& updates_clipped;
  prometheus::Family<prometheus::Counter>& transfer_bytes;    // label direction
  prometheus::Family<prometheus::Histogram>& transfer_duration;  // label direction
  prometheus::Histogram& aggregation_duration;
  prometheus::Family<prometheus::Counter>& transfer_resumes;  // label direction
  prometheus::Histogram& update_staleness;  // asynchronous rounds: versions behind, per accepted update
  prometheus::Counter& stragglers;
  prometheus::Counter& dropouts;
  prometheus::Counter& client_failures;
  prometheus::Gauge& server_eval_loss;  // the first evaluation set's
  prometheus::Family<prometheus::Gauge>& evaluation_set_loss;  // label set: every evaluation set's
  prometheus::Gauge& privacy_epsilon;  // under strategy.privacy: epsilon spent so far, at its delta
  prometheus::Gauge& checkpoint_timestamp;
  prometheus::Gauge& checkpoint_bytes;
  prometheus::Counter& hash_failures;
  prometheus::Family<prometheus::Counter>& registrations_refused;  // label reason
  // spec.evaluation.contributionScores: each client's score summed over the rounds scored.
  prometheus::Family<prometheus::Gauge>& contribution_score;  // labels client, estimate (first_order, leave_one_out), set

  void rejected(const std::string& reason);
  void registration_refused(const std::string& reason);
  void transferred(const std::string& direction, double bytes, double seconds);
};

}  // namespace zk0
