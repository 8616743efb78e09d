#include "attack/attacked_federation.h"

#include <filesystem>
#include <memory>
#include <stdexcept>

#include "support/test_support.h"

namespace zk0::test {

AttackedOutcome run_attacked_federation(const AttackedRun& run, const std::string& dir, std::chrono::seconds timeout) {
  const bool honest_only = run.attack.empty();
  const int members = honest_only ? run.clients - run.byzantine : run.clients;
  const int honest = run.clients - run.byzantine;
  std::map<std::string, std::string> overrides = {{"strategyType", "fedavg"},
                                                  {"proximalMu", ""},
                                                  {"minFitClients", std::to_string(members)},
                                                  {"minAvailableClients", std::to_string(members)},
                                                  {"aggregation", run.aggregation}};
  for (const auto& [k, v] : run.overrides) overrides[k] = v;
  std::filesystem::create_directories(dir);
  const std::string out = dir + "/out";
  const std::string spec = write_spec(dir, small_spec(out, members, run.rounds, overrides));
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  std::vector<std::unique_ptr<Process>> processes;
  processes.push_back(std::make_unique<Process>(
      std::vector<std::string>{bin("zk0-aggregator"), "--spec", spec, "--listen", address, "--metrics-listen", "127.0.0.1:0"},
      dir + "/aggregator.log"));
  for (int i = 0; i < honest; ++i) {
    const std::string name = "c" + std::to_string(i);
    processes.push_back(std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-worker"), "--spec", spec, "--client", name, "--aggregator", address,
                                 "--metrics-listen", "127.0.0.1:0", "--state-dir", dir + "/state/" + name},
        dir + "/" + name + ".log"));
  }
  if (!honest_only) {
    std::string attackers;
    for (int i = honest; i < run.clients; ++i) attackers += (attackers.empty() ? "c" : ",c") + std::to_string(i);
    processes.push_back(std::make_unique<Process>(
        std::vector<std::string>{ZK0_BYZANTINE_WORKER, "--spec", spec, "--aggregator", address, "--clients", attackers,
                                 "--attack", run.attack, "--state-dir", dir + "/state/byzantine"},
        dir + "/byzantine.log"));
  }
  AttackedOutcome outcome;
  const int rc = processes[0]->wait(timeout);
  for (const auto& p : processes) outcome.logs += "--- " + p->log_path() + " ---\n" + p->log() + "\n";
  if (rc != 0) throw std::runtime_error("attacked federation in " + dir + " exited " + std::to_string(rc) + ":\n" + outcome.logs);
  outcome.metrics = read_json(out + "/federated_metrics.json");
  const auto& last = outcome.metrics.at("rounds").back();
  if (last.at("round").get<int>() != run.rounds || last.at("server_eval_loss").is_null())
    throw std::runtime_error("attacked federation in " + dir + ": no server loss after round " + std::to_string(run.rounds));
  outcome.final_loss = last.at("server_eval_loss").get<double>();
  return outcome;
}

}  // namespace zk0::test
