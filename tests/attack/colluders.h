#pragma once
// Test-only: the Byzantine clients of one run, colluding in one process. Each trains as an honest
// worker would, then uploads the attack's update instead. For the attacks that need the honest
// updates, the colluders train every honest client's round themselves from the same global, data,
// seed and settings (training is deterministic, so these are the updates the honest clients send).
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attack/adversary.h"
#include "core/spec/federation_spec.h"
#include "worker/trainer.h"

namespace zk0::test {

class Colluders {
 public:
  Colluders(const FederationSpec& spec, std::vector<std::string> byzantine, Attack attack, std::string state_dir);
  ~Colluders();

  // Replaces `result.update` (client's honest parameters after the round) with the attack's.
  void craft(const std::string& client, const RoundTask& task, const ParameterSet& global, RoundResult& result);

 private:
  const DeltaMoments& honest_moments(const RoundTask& task, const ParameterSet& global);

  FederationSpec spec_;
  std::vector<std::string> byzantine_;
  Attack attack_;
  std::string state_dir_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<LocalTrainer>> honest_;  // one per honest client
  std::string moments_key_;  // round and global digest the cached moments are of
  DeltaMoments moments_;
};

}  // namespace zk0::test
