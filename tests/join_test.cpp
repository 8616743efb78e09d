// Remote clients (proto Enrollment, core/security/join_token.h, `zk0 join`): tokens that work
// once, for one client, until they expire; certificates bound to the token's client whatever the
// request asks for; and a run in which two owners join from their own folders with their own
// datasets and train beside a local client, through every refusal the issue names.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/metrics/http_get.h"
#include "core/security/certificate.h"
#include "core/spec/federation_spec.h"
#include "core/security/join_token.h"
#include "core/security/local_ca.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "support/owner_network.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

JoinToken claims_for(const std::string& client, int64_t expires) {
  JoinToken t;
  t.run = "test-run";
  t.client = client;
  t.expires_unix = expires;
  t.ca_sha256 = std::string(64, 'a');
  t.server_name = "localhost";
  return t;
}

}  // namespace

TEST(JoinToken, VerifiesWhatItMintedAndRefusesTamperingForgeryExpiryAndGarbage) {
  const std::string key = new_join_token_key();
  const std::string token = mint_join_token(claims_for("owner-b", now_unix() + 600), key);
  const JoinToken t = verify_join_token(token, key, now_unix());
  EXPECT_EQ(t.run, "test-run");
  EXPECT_EQ(t.client, "owner-b");
  EXPECT_EQ(t.server_name, "localhost");
  EXPECT_EQ(t.nonce.size(), 32u);
  EXPECT_NE(read_join_token(mint_join_token(claims_for("owner-b", now_unix() + 600), key)).nonce, t.nonce) << "each token its own nonce";

  // The owner's side reads the claims without the key; only the key verifies them.
  EXPECT_EQ(read_join_token(token).client, "owner-b");
  EXPECT_NE(what_of([&] { verify_join_token(token, new_join_token_key(), now_unix()); }).find("signature"), std::string::npos);
  // A claim changed (owner-b -> owner-c in the base64 of the JSON) breaks the signature.
  const std::string other = mint_join_token(claims_for("owner-c", now_unix() + 600), key);
  const std::string spliced = other.substr(0, other.rfind('.')) + token.substr(token.rfind('.'));
  EXPECT_NE(what_of([&] { verify_join_token(spliced, key, now_unix()); }).find("signature"), std::string::npos);
  EXPECT_NE(what_of([&] { verify_join_token(token, key, now_unix() + 601); }).find("expired"), std::string::npos);

  for (const std::string& garbage : {std::string("garbage"), std::string("zk0j1."), token.substr(0, token.size() - 5),
                                     std::string("zk0j1.!!!!.") + std::string(64, '0'), std::string(4096, 'z')})
    EXPECT_NE(what_of([&] { read_join_token(garbage); }).find("malformed join token"), std::string::npos) << garbage.substr(0, 40);
}

TEST(Enrollment, TheCertificateNamesTheTokensClientWhateverTheRequestAsksFor) {
  const std::string dir = make_temp_dir("enroll");
  const RunCertificates ca = issue_run_certificates(dir, "test-run", {}, true);
  const std::string ca_pem = read_file(ca.ca_file), ca_key = read_file(ca.ca_key_file);
  // The request says it is owner-c; the token (the caller's decision) says owner-b.
  const KeyAndRequest request = new_key_and_request("owner-c");
  const std::string pem = sign_client_request(request.request_pem, ca_pem, ca_key, "test-run", "owner-b", std::chrono::hours(2));
  const CertificateInfo info = parse_certificate(pem);
  EXPECT_EQ(client_named_by(info, "test-run"), "owner-b");
  EXPECT_EQ(client_named_by(info, "another-run"), std::nullopt);

  // A request whose signature does not verify: its sender does not hold the key it names.
  std::string damaged = request.request_pem;
  const size_t body = damaged.find('\n') + 1;
  damaged[body + 200] = damaged[body + 200] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(what_of([&] { sign_client_request(damaged, ca_pem, ca_key, "test-run", "owner-b", std::chrono::hours(2)); }).empty());
  // A weak key is refused by name.
  EVP_PKEY* weak = EVP_RSA_gen(1024);
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_pubkey(req, weak);
  X509_REQ_sign(req, weak, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, req);
  char* data = nullptr;
  const std::string weak_pem(data, static_cast<size_t>(BIO_get_mem_data(bio, &data)));
  BIO_free(bio);
  X509_REQ_free(req);
  EVP_PKEY_free(weak);
  EXPECT_NE(what_of([&] { sign_client_request(weak_pem, ca_pem, ca_key, "test-run", "owner-b", std::chrono::hours(2)); }).find("too weak"),
            std::string::npos);
  // A key that is not the CA's is refused before anything is signed.
  const RunCertificates other = issue_run_certificates(dir + "/other", "test-run", {}, true);
  EXPECT_NE(what_of([&] {
              sign_client_request(request.request_pem, ca_pem, read_file(other.ca_key_file), "test-run", "owner-b", std::chrono::hours(2));
            }).find("does not belong"),
            std::string::npos);
}

// One local client and two robot owners who join with `zk0 join` from their own folders and
// datasets. Before they do, every bad join is refused with a message naming what is wrong, and
// none of them spends a token; a token works once; a joined certificate names its client only; a
// joined worker that dies rejoins with its certificate, one whose certificate nears its end renews
// it on the way, and the run completes with all three.
TEST(RemoteClients, TwoOwnersJoinWithTokensAndTrainBesideALocalClient) {
  const std::string dir = make_temp_dir("remote");
  const std::string out = dir + "/out";
  // Rounds of a few seconds: long enough that an owner killed in round 2 is still needed after.
  std::string yaml = small_spec(out, 1, 4,
                                {{"tls", "    tls: {mutual: true}"}, {"minFitClients", "3"}, {"minAvailableClients", "3"},
                                 {"startTimeoutSeconds", "120"}, {"roundTimeoutSeconds", "90"}, {"localSteps", "1500"}});
  yaml.replace(yaml.find("  evaluation:"), 0, "    - name: owner-b\n      remote: true\n    - name: owner-c\n      remote: true\n");
  Process run({bin("zk0"), "run", write_spec(dir, yaml)}, dir + "/zk0.log");

  // The owners' datasets: LeRobot datasets on their disks, which the run's spec never names.
  for (const char* owner : {"owner-b", "owner-c"})
    run_command(bin("zk0") + " dataset synth " + dir + "/" + owner + "-data --episodes 6 --episode-length 40 --cameras 0 --seed " +
                std::to_string(owner[6]));
  ASSERT_TRUE(wait_until([&] { return file_exists(out + "/join/owner-c.token") && file_exists(out + "/logs/aggregator.port"); }, 60s))
      << run.log();
  auto trimmed = [](std::string s) { return s.substr(0, s.find_last_not_of("\n ") + 1); };
  const std::string endpoint = "127.0.0.1:" + trimmed(read_file(out + "/logs/aggregator.port"));
  const std::string token_b = trimmed(read_file(out + "/join/owner-b.token"));
  const std::string token_c = trimmed(read_file(out + "/join/owner-c.token"));
  EXPECT_NE(run.log().find("remote client owner-b joins with: zk0 join --endpoint"), std::string::npos) << run.log();

  auto join = [&](const std::string& token, const std::string& dataset, const std::string& state, const std::string& at = "") {
    return std::vector<std::string>{bin("zk0"), "join", "--endpoint", at.empty() ? endpoint : at, "--token", token, "--dataset",
                                    dataset, "--state-dir", dir + "/" + state, "--metrics-listen", "127.0.0.1:0"};
  };
  auto refused = [&](const std::vector<std::string>& argv, int code, const std::string& says) {
    Process p(argv, dir + "/refused.log");
    const int rc = p.wait(30s);
    EXPECT_EQ(rc, code) << p.log();
    EXPECT_NE(p.log().find(says), std::string::npos) << "expected '" << says << "' in:\n" << p.log();
    fs::remove(dir + "/refused.log");
  };
  const std::string data_b = dir + "/owner-b-data", data_c = dir + "/owner-c-data";
  const std::string key = read_join_token_key(out + "/tls/join-token.key");
  JoinToken claims = read_join_token(token_b);
  claims.nonce.clear();

  // Refused on this machine, before anything is sent.
  refused(join("zk0j1.garbage", data_b, "x"), kExitInvalidInput, "malformed join token");
  refused(join(token_b, dir, "x"), kExitInvalidInput, "is not a LeRobot dataset");
  refused(join(token_b, data_b, "x", "127.0.0.1:" + std::to_string(free_port())), kExitError, "does not answer");
  // Refused by the aggregator: a token for a client that is not remote, for none at all, expired,
  // or signed with another key.
  for (const std::string client : {"c0", "nobody"}) {
    JoinToken t = claims;
    t.client = client;
    refused(join(mint_join_token(t, key), data_b, "x"), kExitInvalidInput, "is not a remote client of run 'test-run'");
  }
  JoinToken expired = claims;
  expired.expires_unix = now_unix() - 5;
  refused(join(mint_join_token(expired, key), data_b, "x"), kExitInvalidInput, "expired");
  refused(join(mint_join_token(claims, new_join_token_key()), data_b, "x"), kExitInvalidInput, "signature this run did not make");

  // The owners join (the tokens above spent nothing) and become their workers.
  auto owner_b = std::make_unique<Process>(join(token_b, data_b, "owner-b"), dir + "/owner-b.log");
  // owner-c joins with the worker's own binary (what the worker image runs) and its token in a
  // file, as a mounted Secret gives it; its /status tells what it contributed.
  write_file_atomic(dir + "/owner-c.token", token_c + "\n");
  const int status_port = free_port();
  auto owner_c = std::make_unique<Process>(
      std::vector<std::string>{bin("zk0-worker"), "join", "--endpoint", endpoint, "--token-file", dir + "/owner-c.token", "--dataset",
                               data_c, "--state-dir", dir + "/owner-c", "--metrics-listen", "127.0.0.1:" + std::to_string(status_port)},
      dir + "/owner-c.log");
  ASSERT_TRUE(wait_until([&] { return owner_b->log().find("joined run test-run as owner-b") != std::string::npos; }, 30s))
      << owner_b->log();
  // A token works once, whoever holds it.
  refused(join(token_b, data_b, "thief"), kExitInvalidInput, "already used");
  EXPECT_FALSE(file_exists(dir + "/thief/client.crt"));
  // The key never left owner-b's folder; its certificate names owner-b and no one else.
  EXPECT_EQ(fs::status(dir + "/owner-b/client.key").permissions() & fs::perms::group_all, fs::perms::none);
  std::string as_c = read_file(dir + "/owner-b/run.yaml");
  as_c.replace(as_c.find("name: owner-b"), 13, "name: owner-c");
  std::ofstream(dir + "/as-c.yaml") << as_c;
  Process impostor({bin("zk0-worker"), "--spec", dir + "/as-c.yaml", "--client", "owner-c", "--aggregator", endpoint, "--metrics-listen",
                    "127.0.0.1:0"},
                   dir + "/impostor.log");
  EXPECT_NE(impostor.wait(60s), 0);
  EXPECT_NE(impostor.log().find("issued to client 'owner-b'"), std::string::npos) << impostor.log();

  // owner-b's machine goes down in round 2 and comes back with its certificate (the token is
  // spent): it continues in the current round, and no round completes without it.
  int round_at_kill = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          round_at_kill = read_json(out + "/status.json").value("round", 0);
          return round_at_kill >= 2;
        } catch (const std::exception&) {
          return false;
        }
      },
      120s))
      << run.log();
  nlohmann::json contribution;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          contribution = nlohmann::json::parse(http_get("127.0.0.1", status_port, "/status", 1 << 16, 2s).body);
          return contribution.value("updates_uploaded", 0) >= 1;
        } catch (const std::exception&) {
          return false;
        }
      },
      60s))
      << contribution.dump() << owner_c->log();
  EXPECT_EQ(contribution["run"], "test-run");
  EXPECT_EQ(contribution["client"], "owner-c");
  EXPECT_EQ(contribution["rounds"], 4);
  EXPECT_GE(contribution["rounds_trained"].get<int>(), 1);
  EXPECT_GE(contribution["round"].get<int>(), 1);
  EXPECT_GT(contribution["samples_trained"].get<int64_t>(), 0);
  EXPECT_TRUE(std::isfinite(contribution["last_loss"].get<double>())) << contribution.dump();
  owner_b->signal(SIGKILL);
  owner_c->signal(SIGKILL);
  owner_b->wait(10s);
  owner_c->wait(10s);
  ASSERT_LT(round_at_kill, 4) << "the run outpaced the test: the owners must still be needed when they come back";
  // Back with a termination log, as the worker pod of a FederationMembership runs it.
  std::vector<std::string> again = join(token_b, data_b, "owner-b");
  again.insert(again.end(), {"--termination-log", dir + "/owner-b.termination"});
  owner_b = std::make_unique<Process>(again, dir + "/owner-b-again.log");
  ASSERT_TRUE(wait_until([&] { return owner_b->log().find("rejoining as owner-b") != std::string::npos; }, 30s)) << owner_b->log();
  // owner-c's certificate is near its end (20 s left of 80): coming back, it renews it first,
  // authenticated by that certificate, and continues with the new one.
  const KeyAndRequest short_lived = new_key_and_request("owner-c");
  const std::string short_cert = sign_client_request(short_lived.request_pem, read_file(out + "/tls/ca.crt"),
                                                     read_file(out + "/tls/ca.key"), "test-run", "owner-c", std::chrono::seconds(20));
  write_file_atomic(dir + "/owner-c/client.key", short_lived.key_pem);
  write_file_atomic(dir + "/owner-c/client.crt", short_cert);
  owner_c = std::make_unique<Process>(join(token_c, data_c, "owner-c"), dir + "/owner-c-again.log");
  ASSERT_TRUE(wait_until([&] { return owner_c->log().find("joined run test-run as owner-c") != std::string::npos; }, 30s))
      << owner_c->log();
  EXPECT_NE(read_file(out + "/logs/aggregator.log").find("event=client_renewed client=owner-c"), std::string::npos);
  const std::string renewed = read_file(dir + "/owner-c/client.crt");
  EXPECT_NE(parse_certificate(renewed).fingerprint_sha256, parse_certificate(short_cert).fingerprint_sha256);
  EXPECT_EQ(client_named_by(parse_certificate(renewed), "test-run"), "owner-c");

  ASSERT_EQ(run.wait(300s), 0) << run.log() << owner_b->log() << owner_c->log();
  EXPECT_EQ(owner_b->wait(30s), 0) << owner_b->log();
  EXPECT_EQ(owner_c->wait(30s), 0) << owner_c->log();
  EXPECT_NE(owner_b->log().find("event=update_uploaded round=4"), std::string::npos) << owner_b->log();
  // What it delivered since it came back, left where the kubelet would keep it.
  const auto delivered = nlohmann::json::parse(read_file(dir + "/owner-b.termination"));
  EXPECT_EQ(delivered["client"], "owner-b");
  EXPECT_EQ(delivered["round"], 4);
  EXPECT_GE(delivered["updates_uploaded"].get<int>(), 1);
  EXPECT_NE(owner_c->log().find("event=update_uploaded round=4"), std::string::npos) << owner_c->log();
  const auto rounds = read_json(out + "/federated_metrics.json")["rounds"];
  ASSERT_EQ(rounds.size(), 5u);
  for (const char* owner : {"owner-b", "owner-c", "c0"}) {
    bool in_last = false;
    for (const auto& c : rounds[4]["clients"]) in_last = in_last || (c["client"] == owner && c["status"] == "accepted");
    EXPECT_TRUE(in_last) << owner << " in the last round: " << rounds[4].dump();
  }
  const auto status = read_json(out + "/status.json");
  EXPECT_EQ(status["clients"]["owner-b"]["remote"], true);
  EXPECT_GT(status["clients"]["owner-b"]["last_seen_unix"].get<double>(), 0);
  // What the owners kept: their key, certificate, the run's CA and the spec with their dataset.
  for (const char* f : {"client.key", "client.crt", "ca.crt", "run.yaml"}) EXPECT_TRUE(file_exists(dir + "/owner-c/" + f)) << f;
  EXPECT_NE(read_file(dir + "/owner-c/run.yaml").find(data_c), std::string::npos);
  EXPECT_EQ(read_file(dir + "/owner-c/run.yaml").find("owner-b"), std::string::npos) << "an owner learns no other client's name";
  EXPECT_EQ(read_file(dir + "/owner-c/run.yaml").find("name: c0"), std::string::npos) << "an owner learns no other client's name";
  EXPECT_EQ(read_file(dir + "/owner-c/run.yaml").find("held-out task"), std::string::npos) << "an owner learns no evaluation dataset";
  EXPECT_NE(read_file(dir + "/owner-c/run.yaml").find(kWithheldDataset), std::string::npos);
}

// `zk0 run` stopped and started again keeps its CA and token key: a token handed out before the
// restart still joins, pinned to the same CA.
TEST(RemoteClients, ARestartedRunKeepsItsCaSoEarlierTokensStillJoin) {
  const std::string dir = make_temp_dir("remote-restart");
  const std::string out = dir + "/out";
  std::string yaml = small_spec(out, 1, 2,
                                {{"tls", "    tls: {mutual: true}"}, {"minFitClients", "2"}, {"minAvailableClients", "2"},
                                 {"startTimeoutSeconds", "60"}});
  yaml.replace(yaml.find("  evaluation:"), 0, "    - name: owner-b\n      remote: true\n");
  const std::string spec = write_spec(dir, yaml);
  auto trimmed = [](std::string s) { return s.substr(0, s.find_last_not_of("\n ") + 1); };
  auto started = [&] {
    return wait_until([&] { return file_exists(out + "/join/owner-b.token") && file_exists(out + "/logs/aggregator.port"); }, 60s);
  };
  auto first = std::make_unique<Process>(std::vector<std::string>{bin("zk0"), "run", spec}, dir + "/zk0-first.log");
  ASSERT_TRUE(started()) << first->log();
  const std::string ca = read_file(out + "/tls/ca.crt");
  const std::string token_key = read_file(out + "/tls/join-token.key");
  const std::string token = trimmed(read_file(out + "/join/owner-b.token"));
  first->signal(SIGTERM);
  first->wait(30s);
  fs::remove(out + "/join/owner-b.token");

  Process again({bin("zk0"), "run", spec}, dir + "/zk0-again.log");
  ASSERT_TRUE(started()) << again.log();
  EXPECT_EQ(read_file(out + "/tls/ca.crt"), ca);
  EXPECT_EQ(read_file(out + "/tls/join-token.key"), token_key);
  run_command(bin("zk0") + " dataset synth " + dir + "/owner-b-data --episodes 6 --episode-length 40 --cameras 0 --seed 5");
  Process owner({bin("zk0"), "join", "--endpoint", "127.0.0.1:" + trimmed(read_file(out + "/logs/aggregator.port")), "--token",
                 token, "--dataset", dir + "/owner-b-data", "--state-dir", dir + "/owner-b", "--metrics-listen", "127.0.0.1:0"},
                dir + "/owner-b.log");
  ASSERT_EQ(again.wait(180s), 0) << again.log() << owner.log();
  EXPECT_EQ(owner.wait(30s), 0) << owner.log();
  EXPECT_NE(owner.log().find("event=update_uploaded round=2"), std::string::npos) << owner.log();
}

// A robot owner's machine as its own network: a network namespace joined to this one by a veth
// pair and nothing else, no default route. The aggregator listens on this side's address only;
// the owner's `zk0 join` reaches it there, cannot reach it by the aggregator machine's loopback,
// and listens on no address of its own but its loopback (the worker only dials out).
TEST(RemoteClients, AnOwnerInItsOwnNetworkNamespaceReachesTheRunOnlyThroughItsEndpoint) {
  ASSERT_EQ(geteuid(), 0u) << "network namespaces need root (make test runs as root, as the cluster tests need)";
  const OwnerNetwork owner_network;
  const std::string endpoint_host = owner_network.host_address();
  int rc = 0;

  const std::string dir = make_temp_dir("remote-netns");
  const std::string out = dir + "/out";
  std::string yaml = small_spec(out, 1, 3,
                                {{"tls", "    tls: {mutual: true}"}, {"minFitClients", "2"}, {"minAvailableClients", "2"},
                                 {"startTimeoutSeconds", "60"}, {"localSteps", "200"}});
  yaml.replace(yaml.find("  evaluation:"), 0, "    - name: owner-b\n      remote: true\n");
  Process run({bin("zk0"), "run", write_spec(dir, yaml), "--listen", endpoint_host + ":0"}, dir + "/zk0.log");
  // zk0 run prints the owner's command just after it writes the token file: wait for both.
  ASSERT_TRUE(wait_until([&] { return file_exists(out + "/join/owner-b.token") && file_exists(out + "/logs/aggregator.port") &&
                                      run.log().find("zk0 join --endpoint") != std::string::npos; }, 60s))
      << run.log();
  auto trimmed = [](std::string s) { return s.substr(0, s.find_last_not_of("\n ") + 1); };
  const std::string port = trimmed(read_file(out + "/logs/aggregator.port"));
  const std::string token = trimmed(read_file(out + "/join/owner-b.token"));
  EXPECT_NE(run.log().find("zk0 join --endpoint " + endpoint_host + ":" + port), std::string::npos) << run.log();
  run_command(bin("zk0") + " dataset synth " + dir + "/owner-b-data --episodes 6 --episode-length 40 --cameras 0 --seed 7");
  const auto join_from_owner = [&](const std::string& endpoint, const std::string& log) {
    return std::make_unique<Process>(owner_network.inside({bin("zk0"), "join", "--endpoint", endpoint, "--token", token, "--dataset",
                                                           dir + "/owner-b-data", "--state-dir", dir + "/owner-b", "--metrics-listen",
                                                           "127.0.0.1:0"}),
                                     log);
  };
  // The aggregator machine's loopback is not the owner's: nothing answers there (and the token
  // is not spent).
  auto lost = join_from_owner("127.0.0.1:" + port, dir + "/owner-lost.log");
  EXPECT_EQ(lost->wait(60s), kExitError) << lost->log();
  EXPECT_NE(lost->log().find("does not answer"), std::string::npos) << lost->log();

  auto owner = join_from_owner(endpoint_host + ":" + port, dir + "/owner-b.log");
  ASSERT_TRUE(wait_until([&] { return owner->log().find("event=round_trained") != std::string::npos; }, 60s)) << owner->log();
  // While it trains: every socket listening in the owner's network is on its loopback.
  const std::string listening = run_command("ip netns exec " + owner_network.name() + " ss -Hltn 2>&1", &rc);
  ASSERT_EQ(rc, 0) << listening;
  std::istringstream lines(listening);
  int listeners = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    ++listeners;
    EXPECT_NE(line.find("127.0.0.1:"), std::string::npos) << "the owner's machine listens beyond its loopback: " << line;
  }
  EXPECT_GE(listeners, 1) << "the worker's metrics listener should be there, on the loopback";
  ASSERT_EQ(run.wait(180s), 0) << run.log() << owner->log();
  EXPECT_EQ(owner->wait(30s), 0) << owner->log();
  EXPECT_NE(owner->log().find("event=update_uploaded round=3"), std::string::npos) << owner->log();
}
