#pragma once
// Checkpoints: <outputDir>/checkpoints/round_NNNN/ holds the global policy as a pretrained folder
// (model.safetensors + config.json, loadable through spec.policy.pretrained), the aggregator's
// state (round, strategy state, seeds, metric history) and SHA256SUMS over every one of those
// files, signed (SHA256SUMS.sig, HMAC-SHA256) when the run has a signing key. A checkpoint is
// built in a temporary folder and renamed into place, then `checkpoints/latest` names it; a crash
// at any point leaves the previous checkpoint the latest valid one.
//
// Reading trusts nothing on the volume: `latest` must name round_NNNN, SHA256SUMS must list
// exactly the files the folder holds (plain names), each must match, and with a key the
// signature must verify; anything else is refused with the file named.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/ledger/ledger.h"
#include "core/policy/policy.h"

namespace zk0 {

struct AggregatorState {
  int round = 0;  // last completed round
  std::string spec_fingerprint;
  std::string global_digest;  // manifest digest of the global trainable parameters
  nlohmann::json strategy;
  ParameterSet strategy_tensors;  // strategy_state.safetensors when not empty (server optimiser moments)
  ParameterSet download_residual;  // download_residual.safetensors when not empty (aggregator/download_steps.h)
  std::optional<LedgerHead> ledger;  // the contribution ledger's head once this round's entries were written
  nlohmann::json history;
};

std::string checkpoint_root(const std::string& output_dir);

// Writes the checkpoint for state.round, signed with `signing_key` unless it is empty, and prunes
// to the newest keep_last (0 keeps all).
std::string write_checkpoint(const std::string& output_dir, Policy& policy, const AggregatorState& state, int keep_last,
                             const std::string& signing_key);

struct LoadedCheckpoint {
  std::string dir;
  AggregatorState state;
};

// The checkpoint `latest` names, verified as above; nullopt when there is none. Throws naming
// the file when a checkpoint exists but is damaged, tampered with or (with a key) unsigned.
std::optional<LoadedCheckpoint> find_latest_checkpoint(const std::string& output_dir, const std::string& signing_key);
// The checkpoint in `dir` (a round_NNNN folder), verified as above.
LoadedCheckpoint read_checkpoint(const std::string& dir, const std::string& signing_key);
// The round folders under checkpoints/, oldest first.
std::vector<std::string> checkpoint_dirs(const std::string& output_dir);

// spec.checkpoints.keepUpdates: <outputDir>/updates/round_NNNN/ holds base.safetensors (the
// round's global) and clients/<client>.safetensors (each update folded into it, as it arrived;
// under a codec encoded, with the manifest's encoding in these metadata keys).
std::string kept_round_dir(const std::string& output_dir, int round);
constexpr const char* kKeptCodecKey = "zk0.codec";
constexpr const char* kKeptDecodedDigestKey = "zk0.decoded_digest";

}  // namespace zk0
