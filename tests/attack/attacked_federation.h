#pragma once
// Test-only: one federation of real processes (zk0-aggregator, zk0-worker for each honest client,
// zk0-byzantine-worker for the attackers) on loopback gRPC, on small_spec's synthetic non-IID
// clients c0..c(n-1); the attackers are the last `byzantine` of them.
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace zk0::test {

struct AttackedRun {
  int clients = 5;
  int byzantine = 1;
  // NAME[:STRENGTH] (attack/adversary.h); empty for the honest-only run: the attackers' clients
  // are left out of the federation altogether.
  std::string attack;
  std::string aggregation;  // the spec's strategy.aggregation/clipping lines, e.g. "aggregation: {rule: median}"
  int rounds = 6;
  std::map<std::string, std::string> overrides;  // more small_spec placeholders
};

struct AttackedOutcome {
  double final_loss = 0;    // the server's evaluation loss after the last round
  nlohmann::json metrics;   // federated_metrics.json
  std::string logs;         // every process's log, for failure messages
};

// Throws with the processes' logs when the run does not succeed within `timeout`.
AttackedOutcome run_attacked_federation(const AttackedRun& run, const std::string& dir,
                                        std::chrono::seconds timeout = std::chrono::seconds(600));

}  // namespace zk0::test
