#include "attack/colluders.h"

#include <algorithm>
#include <cmath>

#include "aggregator/coordinator.h"
#include "core/util/log.h"
#include "core/util/seed.h"

namespace zk0::test {

Colluders::Colluders(const FederationSpec& spec, std::vector<std::string> byzantine, Attack attack, std::string state_dir)
    : spec_(spec), byzantine_(std::move(byzantine)), attack_(attack), state_dir_(std::move(state_dir)) {
  for (const auto& name : byzantine_) spec_.client(name);  // throws naming a client the spec lacks
}

Colluders::~Colluders() = default;

const DeltaMoments& Colluders::honest_moments(const RoundTask& task, const ParameterSet& global) {
  const std::string key = std::to_string(task.round) + "/" + task.base_digest;
  if (key == moments_key_) return moments_;
  std::vector<ParameterSet> deltas;
  for (const auto& c : spec_.clients) {
    if (std::count(byzantine_.begin(), byzantine_.end(), c.name)) continue;
    auto& trainer = honest_[c.name];
    if (!trainer) {
      trainer = std::make_unique<LocalTrainer>(spec_, c, state_dir_ + "/honest/" + c.name);
      trainer->open_dataset();
    }
    RoundTask theirs = task;
    theirs.seed = client_round_seed(spec_.training.seed, task.round, c.name);
    deltas.push_back(subtract(trainer->train_round(global, theirs).update, global));
  }
  if (deltas.empty()) throw std::invalid_argument("colluders: the spec has no honest client to learn from");
  moments_ = delta_moments(deltas);
  moments_key_ = key;
  return moments_;
}

void Colluders::craft(const std::string& client, const RoundTask& task, const ParameterSet& global, RoundResult& result) {
  std::lock_guard<std::mutex> lock(mu_);
  const DeltaMoments* honest = attack_.needs_honest_updates() ? &honest_moments(task, global) : nullptr;
  const ParameterSet own = subtract(result.update, global);
  const ParameterSet bad = malicious_delta(attack_, own, honest, mix_seed(hash_string(client), static_cast<uint64_t>(task.round)));
  result.update = add(global, bad);
  double sq = 0;
  for (const auto& t : bad.tensors)
    for (int64_t i = 0; i < t.numel(); ++i) sq += double(t.as<float>()[i]) * t.as<float>()[i];
  result.report.update_norm = std::sqrt(sq);
  log_info("update_crafted", {kv("client", client), kv("round", task.round), kv("attack", attack_name(attack_.kind)),
                              kv("strength", attack_.strength), kv("norm", result.report.update_norm)});
}

}  // namespace zk0::test
