#pragma once
// `zk0 run`: the embedded runtime. Starts the aggregator and one worker per client as local
// processes on loopback (or, simulating, one worker process hosting every client: see
// worker/simulation.h), shows the run's progress from the aggregator's status.json, and stops
// every child on Ctrl-C or when the aggregator ends.
#include <string>

namespace zk0 {

struct LocalRunOptions {
  std::string spec_path;
  bool fresh = false;  // delete the output directory first instead of resuming from it
  // Where the aggregator listens: loopback for the local workers, or an address remote clients
  // on other machines can reach.
  std::string listen = "127.0.0.1:0";
  // The simulation runtime whatever the spec says (--simulate), and how many clients train at a
  // time (--concurrency as typed, over spec.simulation.concurrency; empty = the spec's, else 1).
  bool simulate = false;
  std::string concurrency;
};

int run_locally(const LocalRunOptions& options);

}  // namespace zk0
