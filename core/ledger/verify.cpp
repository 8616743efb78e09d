#include "core/ledger/verify.h"

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/ledger/ledger.h"
#include "core/security/certificate.h"
#include "core/security/signing.h"
#include "core/tensor/hash.h"
#include "core/util/base64.h"

namespace zk0 {

namespace {

std::string field_string(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

std::string decoded_signature(const nlohmann::json& j, const char* key) {
  try {
    return base64_decode(field_string(j, key), Base64::kStandard);
  } catch (const std::exception&) {
    return "";
  }
}

// Rejections a worker's signature itself caused: there the signature must indeed fail.
bool rejected_for_its_signature(const nlohmann::json& decision) {
  const std::string reason = field_string(decision, "reason");
  return field_string(decision, "status") == "rejected" && (reason == "bad_signature" || reason == "unsigned");
}

class Verifier {
 public:
  Verifier(const std::string& ca_pem, LedgerReport& report) : ca_(ca_pem), report_(report) {}

  void entry(size_t index, const std::string& line, const std::string& prev_hash) {
    const std::string where = "ledger entry " + std::to_string(index);
    nlohmann::json e;
    try {
      e = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      return problem(where + ": not JSON");
    }
    if (!e.is_object()) return problem(where + ": not a JSON object");
    const std::string kind = field_string(e, "kind");
    std::string label = where;
    if (e.contains("round") && e["round"].is_number_integer()) label += " (round " + std::to_string(e["round"].get<int64_t>());
    if (e.contains("client") && e["client"].is_string()) label += (label == where ? " (" : ", ") + std::string("client ") + e["client"].get<std::string>();
    if (label != where) label += ")";
    if (!e.contains("seq") || !e["seq"].is_number_unsigned() || e["seq"].get<uint64_t>() != index)
      problem(label + ": seq is not " + std::to_string(index) + " (an entry was removed, inserted or moved)");
    if (field_string(e, "prev") != prev_hash)
      problem(label + ": prev is not the SHA-256 of the line before (an entry was edited, removed or moved)");
    // The aggregator's signature, with the identity the chain names at this point.
    if (kind == "genesis" || kind == "aggregator") adopt_aggregator(label, e);
    nlohmann::json unsigned_entry = e;
    unsigned_entry.erase("signature");
    if (aggregator_pem_.empty() || !verify_signature(aggregator_pem_, entry_message(unsigned_entry), decoded_signature(e, "signature")))
      problem(label + ": the aggregator's signature does not verify");
    if (index == 0 && kind != "genesis") problem(label + ": the first entry is not the genesis");
    if (kind == "genesis") {
      if (index != 0) problem(label + ": a genesis after the first entry");
      run_ = field_string(e, "run");
      spec_fingerprint_ = field_string(e, "spec_fingerprint");
      const int first = e.contains("first_round") && e["first_round"].is_number_integer() ? e["first_round"].get<int>() : 1;
      trained_from_[first] = field_string(e, "initial_global_digest");
      last_round_ = first - 1;
    } else if (kind == "update") {
      update(label, e);
    } else if (kind == "round") {
      round(index, label, e);
    } else if (kind != "aggregator") {
      problem(label + ": unknown kind '" + kind + "'");
    }
  }

  void finish() {
    if (!open_updates_.empty()) report_.notes.push_back(std::to_string(open_updates_.size()) + " update entries after the last round entry");
    if (unanchored_updates_ > 0)
      report_.notes.push_back(std::to_string(unanchored_updates_) +
                              " updates are signed by worker keys no CA vouches for (no client certificates): they prove the "
                              "same key signed them, not who holds it");
  }

  std::map<int, std::pair<std::string, size_t>> round_entries;  // round -> (global digest, entry index)
  std::string spec_fingerprint_;

 private:
  void problem(const std::string& p) { report_.problems.push_back(p); }

  void adopt_aggregator(const std::string& label, const nlohmann::json& e) {
    const nlohmann::json identity = e.contains("aggregator") ? e["aggregator"] : nlohmann::json();
    aggregator_pem_ = identity_pem(identity);
    if (aggregator_pem_.empty()) return problem(label + ": names no aggregator identity");
    if (field_string(identity, "kind") == "certificate") {
      if (!ca_.empty())
        if (const std::string why = certificate_chain_problem(aggregator_pem_, ca_); !why.empty())
          problem(label + ": the aggregator's certificate " + why);
    } else {
      report_.notes.push_back(label + ": the aggregator signs with a key of its own (no TLS certificate); pin it by comparing "
                              "its public key with the one the run's operator published");
    }
  }

  void update(const std::string& label, const nlohmann::json& e) {
    ++report_.updates;
    const int entry_round = e.contains("round") && e["round"].is_number_integer() ? e["round"].get<int>() : -1;
    const std::string client = field_string(e, "client");
    const nlohmann::json decision = e.contains("decision") ? e["decision"] : nlohmann::json::object();
    const std::string status = field_string(decision, "status");
    const nlohmann::json identity = e.contains("identity") ? e["identity"] : nlohmann::json();
    const std::string pem = identity_pem(identity);
    if (pem.empty()) {
      // A worker refused for sending no signature may have sent no key either.
      if (!rejected_for_its_signature(decision)) problem(label + ": names no worker identity");
      open_updates_.push_back(status);
      return;
    }
    if (field_string(identity, "kind") == "certificate") {
      const CertificateCheck& check = certificate_check(pem);
      if (!check.chain_problem.empty()) problem(label + ": the worker's certificate " + check.chain_problem);
      if (!check.parsed) problem(label + ": the worker's certificate is not a PEM certificate");
      else if (check.names != client)
        problem(label + ": the worker's certificate does not name client '" + client + "' of run '" + run_ + "'");
    } else {
      ++unanchored_updates_;
    }
    const std::string claims_text = field_string(e, "claims");
    const bool signed_ok = verify_signature(pem, claims_message(claims_text), decoded_signature(e, "worker_signature"));
    if (rejected_for_its_signature(decision)) {
      if (signed_ok) problem(label + ": rejected for its signature, yet the worker's signature verifies");
      open_updates_.push_back(status);
      return;
    }
    if (!signed_ok) problem(label + ": the worker's signature over its claims does not verify (forged, altered or missing)");
    UpdateClaims claims;
    try {
      claims = UpdateClaims::parse(claims_text);
    } catch (const std::exception& ex) {
      if (status != "rejected") problem(label + ": " + ex.what());
      open_updates_.push_back(status);
      return;
    }
    // FedBuff: an update trained from an earlier version folds into a later one.
    const int trained_round =
        decision.contains("base_round") && decision["base_round"].is_number_integer() ? decision["base_round"].get<int>() : entry_round;
    // A rejected update may well carry claims that do not fit (that can be why it was refused).
    if (status == "accepted" || status == "discarded") {
      if (claims.run != run_) problem(label + ": the claims are for run '" + claims.run + "', not '" + run_ + "' (replayed)");
      if (claims.client != client) problem(label + ": the claims are client '" + claims.client + "''s (replayed from another client)");
      if (claims.round != trained_round)
        problem(label + ": the claims are for round " + std::to_string(claims.round) + " (replayed from another round)");
      auto matches = [&](const char* key, double claimed) {
        if (!decision.contains(key) || !decision[key].is_number() || decision[key].get<double>() != claimed)
          problem(label + ": the decision's " + key + " is not what the worker signed");
      };
      matches("samples", static_cast<double>(claims.samples));
      matches("steps", claims.steps);
      matches("loss", claims.loss);
      matches("policy_loss", claims.policy_loss);
      const auto base = trained_from_.find(claims.round);
      if (base != trained_from_.end() && base->second != claims.base_digest)
        problem(label + ": trained from " + claims.base_digest + ", not round " + std::to_string(claims.round) + "'s global");
      // The same client may send the same update again in a retried attempt of the same round.
      const auto [seen, fresh] = used_updates_.emplace(claims.update_digest, std::make_pair(entry_round, client));
      if (!fresh && seen->second != std::make_pair(entry_round, client))
        problem(label + ": update " + claims.update_digest + " was already recorded for round " + std::to_string(seen->second.first) +
                ", client " + seen->second.second + " (replayed)");
    }
    if (status != "accepted" && status != "discarded" && status != "rejected")
      problem(label + ": decision status '" + status + "' is none of accepted, discarded, rejected");
    // Updates of an attempt that failed (quorum lost) were not part of the round's global.
    open_updates_.push_back(e.contains("attempt_outcome") ? "unused" : status);
  }

  void round(size_t index, const std::string& label, const nlohmann::json& e) {
    ++report_.rounds;
    const int r = e.contains("round") && e["round"].is_number_integer() ? e["round"].get<int>() : -1;
    if (last_round_ && r != *last_round_ + 1) problem(label + ": follows round " + std::to_string(*last_round_));
    last_round_ = r;
    const std::string global = field_string(e, "global_digest");
    round_entries[r] = {global, index};
    trained_from_[r + 1] = global;
    const nlohmann::json eval = e.contains("eval") ? e["eval"] : nlohmann::json();
    const std::string eval_text = eval.dump();
    if (field_string(e, "eval_digest") != to_hex(sha256(eval_text.data(), eval_text.size())))
      problem(label + ": eval_digest is not the SHA-256 of its evaluation");
    size_t accepted = 0;
    for (const auto& s : open_updates_) accepted += s == "accepted";
    if (!e.contains("accepted") || !e["accepted"].is_number_unsigned() || e["accepted"].get<size_t>() != accepted)
      problem(label + ": counts " + (e.contains("accepted") ? e["accepted"].dump() : "no") + " accepted updates; the entries before it show " +
              std::to_string(accepted));
    open_updates_.clear();
  }

  // A client's certificate recurs in every round's entry: its checks are made once.
  struct CertificateCheck {
    std::string chain_problem;
    bool parsed = false;
    std::optional<std::string> names;  // the client it names in this run
  };
  const CertificateCheck& certificate_check(const std::string& pem) {
    auto [it, fresh] = certificate_checks_.try_emplace(pem);
    if (!fresh) return it->second;
    if (!ca_.empty()) it->second.chain_problem = certificate_chain_problem(pem, ca_);
    try {
      it->second.names = client_named_by(parse_certificate(pem), run_);
      it->second.parsed = true;
    } catch (const std::exception&) {
    }
    return it->second;
  }

  const std::string ca_;
  LedgerReport& report_;
  std::map<std::string, CertificateCheck> certificate_checks_;  // by PEM
  std::string run_, aggregator_pem_;
  std::map<int, std::string> trained_from_;  // round -> the digest of the global it trains from
  std::map<std::string, std::pair<int, std::string>> used_updates_;  // update digest -> (round, client)
  std::vector<std::string> open_updates_;  // statuses of the update entries since the last round entry
  std::optional<int> last_round_;
  size_t unanchored_updates_ = 0;
};

}  // namespace

LedgerReport verify_ledger(const std::string& ledger_text, const std::string& ca_pem, const std::vector<CheckpointFacts>& checkpoints,
                           std::optional<int> latest_round) {
  LedgerReport report;
  std::vector<std::string> lines;
  std::istringstream in(ledger_text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  report.entries = lines.size();
  if (lines.empty()) {
    report.problems.push_back("the ledger is empty");
    return report;
  }
  Verifier v(ca_pem, report);
  std::string prev;
  for (size_t i = 0; i < lines.size(); ++i) {
    v.entry(i, lines[i], prev);
    prev = line_hash(lines[i]);
  }
  v.finish();
  for (const CheckpointFacts& c : checkpoints) {
    const std::string where = "checkpoint " + c.dir;
    if (c.spec_fingerprint != v.spec_fingerprint_)
      report.problems.push_back(where + ": its spec fingerprint is not the ledger's run's (another run's checkpoint)");
    const auto r = v.round_entries.find(c.round);
    if (r == v.round_entries.end()) {
      report.problems.push_back(where + ": the ledger has no entry for round " + std::to_string(c.round));
      continue;
    }
    if (r->second.first != c.global_digest)
      report.problems.push_back(where + ": its global digest " + c.global_digest + " is not the one the ledger records for round " +
                                std::to_string(c.round) + " (" + r->second.first + ")");
    if (!c.ledger_entries) {
      report.problems.push_back(where + ": records no ledger head");
      continue;
    }
    const uint64_t n = *c.ledger_entries;
    if (n == 0 || n > lines.size() || line_hash(lines[n - 1]) != c.ledger_head)
      report.problems.push_back(where + ": its ledger head (entry " + std::to_string(n) + ", " + c.ledger_head +
                                ") is not in the chain (the ledger was cut, edited or replaced)");
    else if (r->second.second != n - 1)
      report.problems.push_back(where + ": its ledger head is not round " + std::to_string(c.round) + "'s entry");
    if (latest_round && c.round == *latest_round)
      for (const auto& [later, entry] : v.round_entries)
        if (later <= c.round && entry.second >= n)
          report.problems.push_back("ledger entry " + std::to_string(entry.second) + ": round " + std::to_string(later) +
                                    " lies beyond the latest checkpoint's head");
  }
  if (latest_round) {
    bool found = false;
    for (const auto& c : checkpoints) found |= c.round == *latest_round;
    if (!found) report.problems.push_back("checkpoints/latest names round " + std::to_string(*latest_round) + ", which was not verified");
  }
  return report;
}

}  // namespace zk0
