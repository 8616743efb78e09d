// The contribution ledger (core/ledger/): a real run's ledger verifies with `zk0 ledger verify`,
// and every kind of tampering is found with the entry and the reason named. Tampering that a
// dishonest aggregator could do (it holds its own key) re-signs and re-chains the ledger, so that
// only the check that catches it is left to catch it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/ledger/ledger.h"
#include "core/ledger/verify.h"
#include "core/security/signing.h"
#include "core/util/base64.h"
#include "core/util/fs.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Verdict {
  int exit_code = -1;
  std::string output;
};

Verdict verify(const std::string& out, const std::string& ca = "", const std::string& flags = "") {
  Verdict v;
  v.output = run_command(bin("zk0") + " ledger verify " + out + (ca.empty() ? "" : " --ca " + ca) + " " + flags + " 2>&1", &v.exit_code);
  return v;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  std::ofstream(path, std::ios::trunc) << text;
}

// What an aggregator that holds its own key can do after editing entries: number them again,
// chain them again and sign each again.
std::vector<std::string> resigned(const std::vector<nlohmann::json>& entries, const SigningKey& aggregator) {
  std::vector<std::string> out;
  std::string prev;
  for (size_t i = 0; i < entries.size(); ++i) {
    nlohmann::json e = entries[i];
    e.erase("signature");
    e["seq"] = i;
    e["prev"] = prev;
    e["signature"] = base64_encode(aggregator.sign(entry_message(e)), Base64::kStandard);
    out.push_back(e.dump());
    prev = line_hash(out.back());
  }
  return out;
}

// The index of the update entry of `client` in `round`.
size_t update_index(const std::vector<nlohmann::json>& entries, int round, const std::string& client) {
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i]["kind"] == "update" && entries[i]["round"] == round && entries[i]["client"] == client) return i;
  throw std::runtime_error("no update entry of " + client + " in round " + std::to_string(round));
}

struct FinishedRun {
  std::string dir, out;
};

FinishedRun run_federation(const std::string& tag, const std::map<std::string, std::string>& overrides) {
  FinishedRun r;
  r.dir = make_temp_dir(tag);
  r.out = r.dir + "/out";
  const std::string spec = write_spec(r.dir, small_spec(r.out, 3, 2, overrides));
  Process run({bin("zk0"), "run", spec}, r.dir + "/zk0.log");
  EXPECT_EQ(run.wait(180s), 0) << run.log();
  return r;
}

}  // namespace

TEST(Ledger, ARunsLedgerVerifiesAndEveryTamperingIsNamed) {
  const std::string certs_dir = make_temp_dir("ledger-certs");
  const Certificates certs = generate_certificates(certs_dir);
  const FinishedRun run = run_federation("ledger-mtls", {{"tls", mutual_tls_block(certs)}, {"clientExtra", client_tls_extra(certs)},
                                                 {"minFitClients", "3"}, {"minAvailableClients", "3"}});
  const std::string ledger = run.out + "/" + kLedgerFile;
  std::vector<nlohmann::json> entries;
  for (const auto& l : lines_of(ledger)) entries.push_back(nlohmann::json::parse(l));
  // Genesis, then per round three updates and the round's entry.
  ASSERT_EQ(entries.size(), 1u + 2 * 4) << read_file(ledger);
  EXPECT_EQ(entries[0]["kind"], "genesis");
  EXPECT_EQ(entries[0]["aggregator"]["kind"], "certificate");
  const auto metrics = read_json(run.out + "/federated_metrics.json");
  for (int round = 1; round <= 2; ++round) {
    const nlohmann::json& r = entries[static_cast<size_t>(round) * 4];
    EXPECT_EQ(r["kind"], "round");
    EXPECT_EQ(r["global_digest"], metrics["rounds"][round]["global_digest"]);
    EXPECT_EQ(r["accepted"], 3);
    for (const char* client : {"c0", "c1", "c2"}) {
      const nlohmann::json& u = entries[update_index(entries, round, client)];
      EXPECT_EQ(u["decision"]["status"], "accepted");
      EXPECT_EQ(u["identity"]["kind"], "certificate");
      EXPECT_NE(u["identity"]["subject"].get<std::string>().find(std::string("CN=") + client), std::string::npos);
      EXPECT_EQ(nlohmann::json::parse(u["claims"].get<std::string>())["base_digest"], metrics["rounds"][round - 1]["global_digest"]);
    }
  }
  const auto state = read_json(run.out + "/checkpoints/round_0002/aggregator_state.json");
  EXPECT_EQ(state["ledger"]["entries"], entries.size());
  EXPECT_EQ(state["ledger"]["head"], line_hash(lines_of(ledger).back()));

  const Verdict honest = verify(run.out, certs.ca);
  ASSERT_EQ(honest.exit_code, 0) << honest.output;
  EXPECT_NE(honest.output.find("ledger verified: 9 entries, 6 updates, 2 rounds, 2 checkpoints"), std::string::npos) << honest.output;

  // Against another CA, nobody's certificate chains.
  const Verdict other_ca = verify(run.out, certs.dir + "/rogue-ca.pem");
  EXPECT_EQ(other_ca.exit_code, 1);
  EXPECT_NE(other_ca.output.find("FAIL: ledger entry 0: the aggregator's certificate does not chain to the CA"), std::string::npos)
      << other_ca.output;

  const std::vector<std::string> original = lines_of(ledger);
  const SigningKey aggregator = SigningKey::from_pem(read_file(certs.server_key), "server key");
  auto tampered = [&](const std::vector<std::string>& lines) {
    write_lines(ledger, lines);
    const Verdict v = verify(run.out, certs.ca);
    write_lines(ledger, original);
    EXPECT_EQ(v.exit_code, 1) << v.output;
    return v.output;
  };
  const size_t c1_round2 = update_index(entries, 2, "c1");
  const std::string c1_label = "ledger entry " + std::to_string(c1_round2) + " (round 2, client c1)";

  // An edited field.
  {
    auto lines = original;
    nlohmann::json e = entries[c1_round2];
    e["decision"]["weight"] = 0.9;
    lines[c1_round2] = e.dump();
    const std::string out = tampered(lines);
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the aggregator's signature does not verify"), std::string::npos) << out;
    EXPECT_NE(out.find("ledger entry " + std::to_string(c1_round2 + 1) + " (round 2, client c2): prev is not the SHA-256 of the line before"),
              std::string::npos)
        << out;
  }
  // A removed entry, and two entries swapped.
  {
    auto lines = original;
    lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(c1_round2));
    const std::string out = tampered(lines);
    EXPECT_NE(out.find("ledger entry " + std::to_string(c1_round2) + " (round 2, client c2): seq is not " + std::to_string(c1_round2)),
              std::string::npos)
        << out;
    auto swapped = original;
    std::swap(swapped[1], swapped[2]);
    const std::string out2 = tampered(swapped);
    EXPECT_NE(out2.find("ledger entry 1 (round 1, client c1): seq is not 1"), std::string::npos) << out2;
  }
  // A forged and a missing worker signature, with the chain made whole again by the aggregator's key.
  {
    auto forged = entries;
    const SigningKey other = SigningKey::load_or_create_ed25519("");
    forged[c1_round2]["worker_signature"] =
        base64_encode(other.sign(claims_message(forged[c1_round2]["claims"].get<std::string>())), Base64::kStandard);
    std::string out = tampered(resigned(forged, aggregator));
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the worker's signature over its claims does not verify"), std::string::npos) << out;
    EXPECT_EQ(out.find("the aggregator's signature does not verify"), std::string::npos) << out;
    forged[c1_round2]["worker_signature"] = "";
    out = tampered(resigned(forged, aggregator));
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the worker's signature over its claims does not verify"), std::string::npos) << out;
  }
  // An update replayed from another round (c1's round-1 update as its round-2 one) and from
  // another client (c0's round-2 update as c1's).
  {
    auto replayed = entries;
    const size_t c1_round1 = update_index(entries, 1, "c1");
    for (const char* field : {"claims", "worker_signature", "decision"}) replayed[c1_round2][field] = entries[c1_round1][field];
    std::string out = tampered(resigned(replayed, aggregator));
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the claims are for round 1 (replayed from another round)"), std::string::npos) << out;
    EXPECT_NE(out.find("was already recorded for round 1, client c1 (replayed)"), std::string::npos) << out;

    auto from_other = entries;
    const size_t c0_round2 = update_index(entries, 2, "c0");
    for (const char* field : {"claims", "worker_signature", "decision"}) from_other[c1_round2][field] = entries[c0_round2][field];
    out = tampered(resigned(from_other, aggregator));
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the claims are client 'c0''s (replayed from another client)"), std::string::npos) << out;
    EXPECT_NE(out.find("FAIL: " + c1_label + ": the worker's signature over its claims does not verify"), std::string::npos) << out;
  }

  // Another run's checkpoint put in place of this run's (a run without TLS: its ledger verifies
  // with keys nobody vouches for, which verify says).
  const FinishedRun other = run_federation("ledger-plain", {{"minFitClients", "3"}, {"minAvailableClients", "3"}, {"lr", "2.0e-3"}});
  const Verdict plain = verify(other.out);
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("signed by worker keys no CA vouches for"), std::string::npos) << plain.output;
  EXPECT_NE(plain.output.find("the aggregator signs with a key of its own"), std::string::npos) << plain.output;
  fs::remove_all(run.out + "/checkpoints/round_0002");
  fs::copy(other.out + "/checkpoints/round_0002", run.out + "/checkpoints/round_0002");
  const Verdict swapped = verify(run.out, certs.ca);
  EXPECT_EQ(swapped.exit_code, 1) << swapped.output;
  EXPECT_NE(swapped.output.find("round_0002: its spec fingerprint is not the ledger's run's (another run's checkpoint)"), std::string::npos)
      << swapped.output;
  EXPECT_NE(swapped.output.find("round_0002: its ledger head"), std::string::npos) << swapped.output;
  // Without kept updates there is nothing to recompute, and verify says so.
  const Verdict nothing_kept = verify(other.out, "", "--recompute");
  EXPECT_EQ(nothing_kept.exit_code, 1) << nothing_kept.output;
  EXPECT_NE(nothing_kept.output.find("the run did not keep its updates (spec.checkpoints.keepUpdates)"), std::string::npos)
      << nothing_kept.output;
}

// With spec.checkpoints.keepUpdates, each global is recomputed from the kept uploads by the
// aggregator's own code (here int8-encoded uploads, decoded again, and encoded download steps):
// an update swapped for another or a weight the aggregator rewrote is found.
TEST(Ledger, KeptUpdatesRecomputeEveryGlobalBitForBitAndEditsAreFound) {
  const FinishedRun run = run_federation("ledger-recompute", {{"minFitClients", "3"}, {"minAvailableClients", "3"},
                                                              {"keepLast", "0, keepUpdates: true"},
                                                              {"tls", "    compression: {codec: int8, blockSize: 64}\n"}});
  for (const char* f : {"round_0001/base.safetensors", "round_0001/clients/c0.safetensors", "round_0002/clients/c2.safetensors"})
    EXPECT_TRUE(file_exists(run.out + "/updates/" + f)) << f;
  const Verdict honest = verify(run.out, "", "--recompute");
  ASSERT_EQ(honest.exit_code, 0) << honest.output;
  EXPECT_NE(honest.output.find("2 rounds recomputed"), std::string::npos) << honest.output;

  // The aggregator (its own key signs the ledger: no TLS here) records another weight for c1.
  const std::string ledger = run.out + "/" + kLedgerFile;
  const std::vector<std::string> original = lines_of(ledger);
  std::vector<nlohmann::json> entries;
  for (const auto& l : original) entries.push_back(nlohmann::json::parse(l));
  const size_t c1_round2 = update_index(entries, 2, "c1");
  entries[c1_round2]["decision"]["weight"] = entries[c1_round2]["decision"]["weight"].get<double>() / 2;
  write_lines(ledger, resigned(entries, SigningKey::from_pem(read_file(run.out + "/keys/ledger_ed25519.pem"), "key")));
  const Verdict reweighted = verify(run.out, "", "--recompute");
  write_lines(ledger, original);
  EXPECT_EQ(reweighted.exit_code, 1) << reweighted.output;
  EXPECT_NE(reweighted.output.find("FAIL: recompute: round 2: the kept updates aggregate to "), std::string::npos) << reweighted.output;
  EXPECT_NE(reweighted.output.find(", not the recorded global " + entries[c1_round2 + 2]["global_digest"].get<std::string>()),
            std::string::npos)
      << reweighted.output;

  // A kept update replaced by another client's.
  const std::string kept = run.out + "/updates/round_0001/clients/";
  fs::copy_file(kept + "c0.safetensors", kept + "c1.safetensors", fs::copy_options::overwrite_existing);
  const Verdict replaced = verify(run.out, "", "--recompute");
  EXPECT_EQ(replaced.exit_code, 1) << replaced.output;
  EXPECT_NE(replaced.output.find("FAIL: recompute: round 1, client c1: " + kept + "c1.safetensors is not the update the worker signed"),
            std::string::npos)
      << replaced.output;
}
