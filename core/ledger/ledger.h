#pragma once
// The contribution ledger: <outputDir>/ledger.jsonl, one JSON entry per line, append-only.
//
// Entries, in order: a genesis (the run, its spec fingerprint, the aggregator's identity and the
// initial global's digest); for each round (a FedBuff version), one entry per update the
// aggregator accepted or rejected, then the round's own entry (the new global's digest, the
// evaluation and its digest); an `aggregator` entry where a resumed aggregator signs with another
// identity (a renewed certificate). Each entry carries `seq`, `prev` (the SHA-256 of the previous
// line's bytes: a hash chain) and `signature`, the aggregator's over the entry without it. An
// update's entry also carries the worker's own signature over its claims (run, round, client, the
// global it trained from, its update's manifest digest, samples, steps, losses), made before the
// upload with the key of its client certificate, or of an Ed25519 key of its own without one.
//
// Durability: a round's entries are written and fsynced before the checkpoint that refers to
// them; the checkpoint records the chain's head (entries, SHA-256 of the last line), and its
// SHA256SUMS covers that record. A resumed run cuts what came after the head (a round it will
// redo) into ledger.abandoned.jsonl and continues the same chain.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/security/signing.h"

namespace zk0 {

constexpr const char* kLedgerFile = "ledger.jsonl";

// What a worker signs about its update, as canonical JSON (sorted keys, no spaces).
struct UpdateClaims {
  std::string run, client, base_digest, update_digest;
  int round = 0;
  uint64_t samples = 0;
  uint32_t steps = 0;
  double loss = 0, policy_loss = 0;

  std::string canonical() const;
  // Throws std::runtime_error naming what is missing or malformed.
  static UpdateClaims parse(const std::string& canonical);
};
// The signatures of claims and of entries cover a domain tag as well, so that neither can be
// presented as the other or as a signature made for something else with the same key.
std::string claims_message(const std::string& canonical_claims);
std::string entry_message(const nlohmann::json& entry_without_signature);

// Who signed: a certificate ({"kind": "certificate", certificate, fingerprint, subject}) or a key
// nobody vouches for ({"kind": "key", public_key, note}).
nlohmann::json certificate_identity(const std::string& certificate_pem);
nlohmann::json key_identity(const std::string& public_key_pem, const std::string& why_no_certificate);
// The PEM a signature of this identity verifies with.
std::string identity_pem(const nlohmann::json& identity);

// What an update's entry needs beyond the aggregator's decision: who sent it and what they signed.
struct UpdateEvidence {
  nlohmann::json identity;
  std::string claims;     // canonical, as signed
  std::string signature;  // raw bytes; empty when the worker sent none
};

struct LedgerHead {
  uint64_t entries = 0;
  std::string sha256;  // of the last line's bytes; empty before the genesis
  nlohmann::json json() const { return {{"entries", entries}, {"head", sha256}}; }
  static LedgerHead from_json(const nlohmann::json& j);
};

std::string line_hash(const std::string& line);

class LedgerWriter {
 public:
  // `identity`: the aggregator's, whose key is `key`.
  LedgerWriter(std::string output_dir, SigningKey key, nlohmann::json identity);

  // A new run: a new chain starting with its genesis (an old ledger.jsonl, of a run whose first
  // checkpoint never came, is moved to ledger.abandoned.jsonl).
  // `first_round`: 1, or the round after a checkpoint written before the run kept a ledger.
  void start(const std::string& run, const std::string& spec_fingerprint, const std::string& initial_global_digest, int first_round);
  // A resumed run: the chain up to `head` (the latest checkpoint's) continues; entries after it
  // move to ledger.abandoned.jsonl. Throws naming the file when the ledger does not hold `head`.
  void resume(const LedgerHead& head);

  // Adds `seq`, `prev` and `signature`; kept in memory until commit().
  void append(nlohmann::json entry);
  // Appends what append() kept to the file and fsyncs it.
  void commit();
  LedgerHead head() const { return head_; }

 private:
  std::string path() const;
  void move_to_abandoned(const std::vector<std::string>& lines);
  std::string output_dir_;
  SigningKey key_;
  nlohmann::json identity_;
  LedgerHead head_;
  std::vector<std::string> pending_;
};

}  // namespace zk0
