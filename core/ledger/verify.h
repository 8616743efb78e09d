#pragma once
// What `zk0 ledger verify` checks (core/ledger/ledger.h for the format): the chain (each `prev` the
// SHA-256 of the line before, `seq` in order), the aggregator's signature on every entry with the
// identity the chain names at that point, every worker's signature over its claims and that the
// claims are the entry's (run, round, client, samples, steps, losses: an update replayed from
// another round or client does not fit), that no update digest is used twice, that certificates
// chain to the run's CA and name their client, that each round's global digest is its
// checkpoint's, and that the chain's head is the latest checkpoint's.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zk0 {

// What a verified checkpoint folder says (aggregator/checkpoint.h).
struct CheckpointFacts {
  std::string dir;
  int round = 0;
  std::string spec_fingerprint, global_digest;
  std::optional<uint64_t> ledger_entries;  // absent: the checkpoint records no ledger head
  std::string ledger_head;
};

struct LedgerReport {
  std::vector<std::string> problems;  // each names the entry (or checkpoint) and the reason
  std::vector<std::string> notes;     // true but weaker than a CA-anchored proof (keys nobody vouches for)
  uint64_t entries = 0, updates = 0, rounds = 0;
  bool ok() const { return problems.empty(); }
};

// `ledger_text`: the ledger file's bytes; `ca_pem`: the run's CA, empty to check signatures only
// against the identities the chain records (then said in `notes`). `checkpoints` in any order;
// `latest_round`: the one checkpoints/latest names.
LedgerReport verify_ledger(const std::string& ledger_text, const std::string& ca_pem, const std::vector<CheckpointFacts>& checkpoints,
                           std::optional<int> latest_round);

}  // namespace zk0
