#pragma once
// Everything a run writes besides checkpoints, rewritten atomically after every round so that a
// crash never loses a completed round's numbers:
//   spec.yaml                  the resolved spec
//   federated_metrics.json     the full history (one record per round, round 0 = initial model)
//   federated_metrics.csv      the same, one row per (round, participant); participant "server"
//   rounds/round_NNNN.json     one record per round
//   server_eval_loss.{svg,png} server loss on the held-out dataset against round, with the
//                              clients' mean training loss, every other evaluation set's loss and a
//                              mark at rounds that left a client out
//   client_losses.{svg,png}    each client's training loss against round
//   status.json                live state for `zk0 run` and the operator
#include <nlohmann/json.hpp>
#include <string>

#include "aggregator/charts.h"
#include "core/spec/federation_spec.h"

namespace zk0 {

// The two charts, from a history as federated_metrics.json holds it; `server_set` names the
// evaluation set whose loss is the server loss (the others get their own lines).
Chart server_loss_chart(const nlohmann::json& history, const std::string& run_name, const std::string& server_set = "heldout");
Chart client_loss_chart(const nlohmann::json& history, const std::string& run_name);

class RunOutputs {
 public:
  RunOutputs(const FederationSpec& spec, std::string dir);

  // Replaces the history (on resume, with the checkpoint's) and rewrites every file from it.
  void restore(const nlohmann::json& history);
  void append_round(const nlohmann::json& record);
  const nlohmann::json& history() const { return history_; }

  void write_status(const std::string& status_json);
  const std::string& dir() const { return dir_; }

 private:
  void write_all();
  void write_csv();
  void write_charts();

  std::string dir_;
  std::string run_name_;
  std::vector<std::string> evaluation_sets_;  // in the spec's order: the first is the server loss's
  bool scored_ = false;                       // spec.evaluation.contributionScores
  nlohmann::json history_ = nlohmann::json::array();
};

}  // namespace zk0
