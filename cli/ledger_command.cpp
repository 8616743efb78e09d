#include "cli/ledger_command.h"

#include <filesystem>
#include <iostream>

#include "aggregator/checkpoint.h"
#include "aggregator/recompute.h"
#include "core/ledger/ledger.h"
#include "core/ledger/verify.h"
#include "core/util/fs.h"

namespace zk0 {

namespace {

int usage() {
  std::cerr << "usage: zk0 ledger verify OUTPUT_DIR [--ca CA.pem] [--checkpoint-key FILE] [--recompute]\n"
               "  checks OUTPUT_DIR/ledger.jsonl: the hash chain, the aggregator's and every worker's signature (against\n"
               "  the run's CA with --ca), the claims against each entry, and each round's global and the chain's head\n"
               "  against the checkpoints (whose SHA256SUMS.sig is checked with --checkpoint-key); --recompute aggregates\n"
               "  every round again from the updates the run kept (spec.checkpoints.keepUpdates) and compares the globals\n";
  return 2;
}

}  // namespace

int ledger_command(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) != "verify") return usage();
  const std::string output_dir = argv[2];
  std::string ca_file, key_file;
  bool recompute = false;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--ca" && i + 1 < argc) ca_file = argv[++i];
    else if (a == "--checkpoint-key" && i + 1 < argc) key_file = argv[++i];
    else if (a == "--recompute") recompute = true;
    else return usage();
  }
  std::string ledger_text, ca_pem, key;
  try {
    ledger_text = read_file((std::filesystem::path(output_dir) / kLedgerFile).string());
    if (!ca_file.empty()) ca_pem = read_file(ca_file);
    if (!key_file.empty()) key = read_file(key_file);
  } catch (const std::exception& e) {
    std::cerr << "zk0 ledger verify: " << e.what() << "\n";
    return 2;
  }
  std::vector<CheckpointFacts> checkpoints;
  std::vector<std::string> damaged;
  for (const std::string& dir : checkpoint_dirs(output_dir)) {
    try {
      const LoadedCheckpoint c = read_checkpoint(dir, key);
      CheckpointFacts facts{dir, c.state.round, c.state.spec_fingerprint, c.state.global_digest, std::nullopt, ""};
      if (c.state.ledger) facts.ledger_entries = c.state.ledger->entries, facts.ledger_head = c.state.ledger->sha256;
      checkpoints.push_back(std::move(facts));
    } catch (const std::exception& e) {
      damaged.push_back(e.what());
    }
  }
  std::optional<int> latest;
  try {
    if (const auto c = find_latest_checkpoint(output_dir, key)) latest = c->state.round;
  } catch (const std::exception& e) {
    damaged.push_back(e.what());
  }
  LedgerReport report = verify_ledger(ledger_text, ca_pem, checkpoints, latest);
  report.problems.insert(report.problems.end(), damaged.begin(), damaged.end());
  int recomputed = 0;
  // Also where the chain already failed: which rounds the kept updates still reproduce narrows
  // down what was changed.
  if (recompute) {
    const RecomputeReport r = recompute_rounds(output_dir, ledger_text);
    report.problems.insert(report.problems.end(), r.problems.begin(), r.problems.end());
    recomputed = r.rounds;
  }
  if (ca_pem.empty())
    report.notes.push_back("no --ca: signatures were checked against the identities the ledger records, not against the run's CA");
  for (const auto& n : report.notes) std::cout << "note: " << n << "\n";
  for (const auto& p : report.problems) std::cout << "FAIL: " << p << "\n";
  std::cout << (report.ok() ? "ledger verified: " : "ledger NOT verified: ") << report.entries << " entries, " << report.updates
            << " updates, " << report.rounds << " rounds, " << checkpoints.size() << " checkpoints"
            << (recompute ? ", " + std::to_string(recomputed) + " rounds recomputed" : "")
            << (report.ok() ? "" : ", " + std::to_string(report.problems.size()) + " problems") << "\n";
  return report.ok() ? 0 : 1;
}

}  // namespace zk0
