#include "aggregator/recompute.h"

#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "aggregator/checkpoint.h"
#include "aggregator/download_steps.h"
#include "core/aggregation/parallel.h"
#include "core/aggregation/strategy.h"
#include "core/codec/update_delta.h"
#include "core/ledger/ledger.h"
#include "core/spec/federation_spec.h"
#include "core/tensor/safetensors.h"

namespace zk0 {

namespace fs = std::filesystem;

namespace {

struct KeptUpdate {
  std::string client, update_digest;
  double weight = 0;
  bool discarded = false;
};

struct RoundToCheck {
  std::vector<KeptUpdate> updates;
  std::string global_digest;
};

Sha256Digest digest_from_hex(const std::string& hex) {
  Sha256Digest d{};
  if (hex.size() != 64) throw std::runtime_error("'" + hex.substr(0, 80) + "' is not a SHA-256 in hex");
  for (size_t i = 0; i < 32; ++i) d[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return d;
}

}  // namespace

ParameterSet read_kept_update(const std::string& path, const ParameterSet& base, const CodecSettings& codec, std::string* update_digest) {
  std::map<std::string, std::string> metadata;
  ParameterSet kept = read_safetensors(path, &metadata);
  const auto encoding = metadata.find(kKeptCodecKey);
  if (encoding == metadata.end()) {
    if (update_digest) *update_digest = build_manifest(kept).digest_hex();
    return kept;
  }
  const Manifest manifest = build_encoded_manifest(kept, {encoding->second, digest_from_hex(metadata.at(kKeptDecodedDigestKey))});
  if (update_digest) *update_digest = manifest.digest_hex();
  return apply_encoded_update(base, layout_of(base), kept, manifest, codec, aggregation_threads());
}

RecomputeReport recompute_rounds(const std::string& output_dir, const std::string& ledger_text) {
  RecomputeReport report;
  const auto problem = [&](const std::string& p) { report.problems.push_back("recompute: " + p); };
  FederationSpec spec;
  const std::string spec_path = (fs::path(output_dir) / "spec.yaml").string();
  try {
    spec = load_spec(spec_path);
  } catch (const std::exception& e) {
    problem(spec_path + ": " + e.what());
    return report;
  }
  if (!spec.checkpoints.keep_updates) {
    problem(spec_path + ": the run did not keep its updates (spec.checkpoints.keepUpdates)");
    return report;
  }
  // The rounds in ledger order, with the updates of each one's final attempt.
  std::map<int, RoundToCheck> rounds;
  std::string initial_digest;
  int first_round = 1;
  std::istringstream in(ledger_text);
  for (std::string line; std::getline(in, line);) {
    const auto e = nlohmann::json::parse(line);
    const std::string kind = e.value("kind", "");
    if (kind == "genesis") {
      initial_digest = e.value("initial_global_digest", "");
      first_round = e.value("first_round", 1);
    } else if (kind == "update" && !e.contains("attempt_outcome")) {
      const nlohmann::json& d = e.at("decision");
      const std::string status = d.value("status", "");
      if (status != "accepted" && status != "discarded") continue;
      KeptUpdate u;
      u.client = e.at("client").get<std::string>();
      u.update_digest = UpdateClaims::parse(e.at("claims").get<std::string>()).update_digest;
      u.weight = d.at("weight").get<double>();
      u.discarded = status == "discarded";
      rounds[e.at("round").get<int>()].updates.push_back(u);
    } else if (kind == "round") {
      rounds[e.at("round").get<int>()].global_digest = e.at("global_digest").get<std::string>();
    }
  }
  if (first_round != 1) {
    problem("the ledger starts at round " + std::to_string(first_round) + ": the strategy's state before it is not recorded");
    return report;
  }
  // Rules that spill a round spill it here; the outputs may be an auditor's read-only copy.
  std::string scratch = (fs::temp_directory_path() / "zk0-recompute-XXXXXX").string();
  if (!mkdtemp(scratch.data())) {
    problem("cannot make a scratch folder under " + fs::temp_directory_path().string());
    return report;
  }
  std::unique_ptr<Strategy> strategy = make_strategy(spec, scratch);
  std::unique_ptr<DownloadSteps> download_steps;
  if (spec.transport.compression.codec.active())
    download_steps = std::make_unique<DownloadSteps>(spec.transport.compression.codec, spec.transport.compression.error_feedback,
                                                     spec.transport.chunk_bytes);
  std::string expected_base = initial_digest;
  for (auto& [round, r] : rounds) {
    const std::string where = "round " + std::to_string(round);
    if (r.global_digest.empty()) {
      problem(where + ": has updates but no round entry");
      break;
    }
    const std::string dir = kept_round_dir(output_dir, round);
    try {
      auto base = std::make_shared<ParameterSet>(read_safetensors(dir + "/base.safetensors"));
      const Manifest base_manifest = build_manifest(*base);
      if (base_manifest.digest_hex() != expected_base) {
        problem(where + ": " + dir + "/base.safetensors is not the global the ledger records before it");
        break;
      }
      auto aggregation = strategy->begin_aggregation(base);
      for (const KeptUpdate& u : r.updates) {
        const std::string path = dir + "/clients/" + u.client + ".safetensors";
        std::string digest;
        ParameterSet kept;
        try {
          kept = read_kept_update(path, *base, spec.transport.compression.codec, &digest);
        } catch (const CodecError&) {
          digest.clear();  // an encoding its digest does not bind: not what the worker signed
        }
        if (digest != u.update_digest) {
          problem(where + ", client " + u.client + ": " + path + " is not the update the worker signed");
          continue;
        }
        aggregation->add(u.client, kept, u.weight);
      }
      AggregationResult result = aggregation->finish();
      for (const UpdateDecision& d : result.decisions)
        for (const KeptUpdate& u : r.updates)
          if (u.client == d.client && u.discarded != (d.outcome == "discarded"))
            problem(where + ", client " + u.client + ": the rule " + (u.discarded ? "keeps" : "discards") +
                    " this update; the ledger records the opposite");
      ParameterSet next = strategy->server_step(*base, std::move(result.parameters));
      if (download_steps) {
        GlobalModel from;
        from.round = round;
        from.parameters = *base;
        from.manifest = base_manifest;
        next = download_steps->advance(from, next, round + 1);
      }
      const std::string digest = build_manifest(next).digest_hex();
      if (digest != r.global_digest) {
        problem(where + ": the kept updates aggregate to " + digest + ", not the recorded global " + r.global_digest);
        break;
      }
      ++report.rounds;
      expected_base = r.global_digest;
    } catch (const std::exception& e) {
      problem(where + ": " + e.what());
      break;
    }
  }
  std::error_code ignored;
  fs::remove_all(scratch, ignored);
  return report;
}

}  // namespace zk0
