#pragma once
// Checkpoints: <outputDir>/checkpoints/round_NNNN/ holds the global policy as a pretrained folder
// (model.safetensors + config.json, loadable through spec.policy.pretrained), the aggregator's
// state (round, strategy state, seeds, metric history) and SHA256SUMS over those files. A
// checkpoint is built in a temporary folder and renamed into place, then `checkpoints/latest`
// names it; a crash at any point leaves the previous checkpoint the latest valid one.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/policy/policy.h"

namespace zk0 {

struct AggregatorState {
  int round = 0;  // last completed round
  std::string spec_fingerprint;
  std::string global_digest;  // manifest digest of the global trainable parameters
  nlohmann::json strategy;
  nlohmann::json history;
};

std::string checkpoint_root(const std::string& output_dir);

// Writes the checkpoint for state.round and prunes to the newest keep_last (0 keeps all).
std::string write_checkpoint(const std::string& output_dir, Policy& policy, const AggregatorState& state, int keep_last);

struct LoadedCheckpoint {
  std::string dir;
  AggregatorState state;
};

// The checkpoint `latest` names, with every file's SHA-256 verified; nullopt when there is none.
// Throws naming the file when a checkpoint exists but is damaged.
std::optional<LoadedCheckpoint> find_latest_checkpoint(const std::string& output_dir);

}  // namespace zk0
