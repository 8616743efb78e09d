// Whole federations with real processes: build/bin/zk0, zk0-aggregator and zk0-worker talking
// gRPC on loopback, killed and restarted the way machines fail.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "core/privacy/rdp_accountant.h"
#include "core/tensor/hash.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "support/tcp_relay.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Federation {
  std::string dir, spec, out;
  int port = free_port();
  std::unique_ptr<Process> aggregator;
  std::map<std::string, std::unique_ptr<Process>> workers;

  Federation(const std::string& tag, int clients, int rounds, const std::map<std::string, std::string>& overrides = {}) {
    dir = make_temp_dir(tag);
    out = dir + "/out";
    spec = write_spec(dir, small_spec(out, clients, rounds, overrides));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  void start_aggregator() {
    aggregator = std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-aggregator"), "--spec", spec, "--listen", address(), "--metrics-listen", "127.0.0.1:0"},
        dir + "/aggregator.log");
  }
  // `via`: the aggregator's address as the worker dials it (a relay standing for its link).
  void start_worker(const std::string& name, const std::string& spec_path = "", const std::string& via = "") {
    workers[name] = std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-worker"), "--spec", spec_path.empty() ? spec : spec_path, "--client", name,
                                 "--aggregator", via.empty() ? address() : via, "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                                 dir + "/" + name + ".metrics-port", "--state-dir", dir + "/state/" + name},
        dir + "/" + name + ".log");
  }
  // Each round's global digest, in order (round 0 = the initial model).
  std::vector<std::string> global_digests() const {
    std::vector<std::string> out;
    const nlohmann::json all = metrics();
    for (const auto& r : all["rounds"]) out.push_back(r["global_digest"].get<std::string>());
    return out;
  }
  nlohmann::json status() const { return read_json(out + "/status.json"); }
  nlohmann::json metrics() const { return read_json(out + "/federated_metrics.json"); }
  std::string latest_checkpoint() const {
    try {
      std::string s = read_file(out + "/checkpoints/latest");
      return s.substr(0, s.find('\n'));
    } catch (const std::exception&) {
      return "";
    }
  }
  std::string logs() const {
    std::string all = aggregator ? aggregator->log() : "";
    for (const auto& [n, w] : workers) all += "\n--- " + n + " ---\n" + w->log();
    return all;
  }
};

std::map<std::string, std::string> file_hashes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string content = read_file(e.path().string());
    out[e.path().filename()] = to_hex(sha256(content.data(), content.size()));
  }
  return out;
}

bool any_process_mentions(const std::string& text) {
  DIR* proc = opendir("/proc");
  bool found = false;
  while (dirent* e = readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), {});
    if (std::to_string(getpid()) != e->d_name && cmd.find(text) != std::string::npos && cmd.find("zk0-") != std::string::npos)
      found = true;
  }
  closedir(proc);
  return found;
}

}  // namespace

TEST(Federation, ThreeClientRunCompletesWithEveryOutput) {
  const std::string dir = make_temp_dir("run3");
  const std::string spec = write_spec(
      dir, small_spec(dir + "/out", 3, 3, {{"evalEvery", "2"}, {"keepLast", "2"}, {"minFitClients", "3"}, {"minAvailableClients", "3"}}));
  Process run({bin("zk0"), "run", spec}, dir + "/zk0.log");
  ASSERT_EQ(run.wait(180s), 0) << run.log();
  EXPECT_NE(run.log().find("round 3/3  Succeeded"), std::string::npos) << run.log();

  const auto metrics = read_json(dir + "/out/federated_metrics.json");
  const auto& rounds = metrics["rounds"];
  ASSERT_EQ(rounds.size(), 4u);  // round 0 (initial model) and rounds 1..3
  for (int r = 1; r <= 3; ++r) {
    EXPECT_EQ(rounds[r]["round"], r);
    EXPECT_EQ(rounds[r]["clients_accepted"], 3);
    for (const auto& c : rounds[r]["clients"]) {
      EXPECT_EQ(c["status"], "accepted");
      EXPECT_EQ(c["samples"], 20 * 32);  // localSteps x batchSize
      EXPECT_GT(c["bytes_uploaded"].get<double>(), 0);
      EXPECT_GT(c["bytes_downloaded"].get<double>(), 0);
      EXPECT_GT(c["proximal_loss"].get<double>(), 0);
    }
  }
  // everyRounds: 2 evaluates rounds 0 and 2, plus the final round.
  EXPECT_FALSE(rounds[0]["server_eval_loss"].is_null());
  EXPECT_TRUE(rounds[1]["server_eval_loss"].is_null());
  EXPECT_FALSE(rounds[2]["server_eval_loss"].is_null());
  EXPECT_FALSE(rounds[3]["server_eval_loss"].is_null());
  EXPECT_LT(rounds[3]["server_eval_loss"].get<double>(), rounds[0]["server_eval_loss"].get<double>());
  for (const char* f : {"federated_metrics.csv", "server_eval_loss.svg", "server_eval_loss.png", "client_losses.svg",
                        "client_losses.png", "spec.yaml", "rounds/round_0000.json", "rounds/round_0003.json"})
    EXPECT_TRUE(file_exists(dir + "/out/" + f)) << f;
  const std::string csv = read_file(dir + "/out/federated_metrics.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 4 + 3 * 3);  // header, 4 server rows, 9 client rows
  // keepLast: 2 of the 3 checkpoints remain, each a loadable pretrained folder with its sums.
  EXPECT_FALSE(file_exists(dir + "/out/checkpoints/round_0001"));
  for (const char* f : {"model.safetensors", "config.json", "aggregator_state.json", "SHA256SUMS"})
    EXPECT_TRUE(file_exists(dir + "/out/checkpoints/round_0003/" + std::string(f))) << f;
  EXPECT_TRUE(file_exists(dir + "/out/checkpoints/round_0002"));
}

TEST(Federation, ClientKilledMidRoundRoundStillCompletesBeforeItsDeadline) {
  Federation f("kill", 3, 1,
               {{"localSteps", "3000"}, {"minFitClients", "2"}, {"minAvailableClients", "3"}, {"roundTimeoutSeconds", "120"}});
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return f.status()["clients"]["c2"]["state"] == "training";
        } catch (...) {
          return false;
        }
      },
      60s))
      << f.logs();
  f.workers["c2"]->signal(SIGKILL);
  ASSERT_EQ(f.aggregator->wait(150s), 0) << f.logs();
  const auto round1 = f.metrics()["rounds"][1];
  EXPECT_EQ(round1["clients_accepted"], 2);
  EXPECT_LT(round1["duration_seconds"].get<double>(), 60.0);  // ended on the heartbeat timeout, not the 120 s deadline
  bool dropped = false;
  for (const auto& c : round1["clients"]) dropped |= c["client"] == "c2" && c["status"] == "dropped";
  EXPECT_TRUE(dropped) << round1.dump(2);
}

TEST(Federation, AggregatorKilledAfterRoundTwoResumesAtRoundThree) {
  Federation f("resume", 2, 5, {{"localSteps", "300"}});
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1");
  ASSERT_TRUE(wait_until([&] { return f.latest_checkpoint() == "round_0002"; }, 120s)) << f.logs();
  f.aggregator->signal(SIGKILL);
  f.aggregator->wait(10s);
  const std::string ckpt = f.out + "/checkpoints/round_0002";
  const auto hashes_at_kill = file_hashes(ckpt);
  const auto history_at_kill = read_json(ckpt + "/aggregator_state.json")["history"];
  ASSERT_EQ(history_at_kill.size(), 3u);  // rounds 0, 1, 2

  f.start_aggregator();  // same spec, same port: the workers find it again and re-register
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_NE(f.aggregator->log().find("event=run_resumed"), std::string::npos);
  EXPECT_NE(f.aggregator->log().find("next_round=3"), std::string::npos) << f.aggregator->log();
  const auto rounds = f.metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 6u);
  for (int r = 0; r <= 5; ++r) EXPECT_EQ(rounds[r]["round"], r);
  for (int r = 0; r <= 2; ++r) EXPECT_EQ(rounds[r], history_at_kill[r]);  // no completed round lost or redone
  EXPECT_EQ(file_hashes(ckpt), hashes_at_kill);  // the checkpoint resumed from is unchanged
  // Rounds after the restart started from the checkpoint's global parameters.
  EXPECT_EQ(read_json(ckpt + "/aggregator_state.json")["global_digest"], rounds[2]["global_digest"]);
  for (const auto& [n, w] : f.workers) EXPECT_EQ(w->wait(30s), 0) << w->log();
}

// A random moment of a run, drawn fresh each time (and logged, to replay a failure).
std::chrono::milliseconds random_moment(std::chrono::milliseconds within) {
  std::random_device rd;
  const auto ms = std::uniform_int_distribution<int64_t>(within.count() / 10, within.count() * 9 / 10)(rd);
  std::cerr << "killing at " << ms << " ms\n";
  return std::chrono::milliseconds(ms);
}

// The run the others are compared with, and how long it took.
std::pair<std::vector<std::string>, std::chrono::milliseconds> uninterrupted(const std::string& tag,
                                                                             const std::map<std::string, std::string>& settings) {
  Federation f(tag, 3, 6, settings);
  const auto t0 = std::chrono::steady_clock::now();
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  EXPECT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  return {f.global_digests(), std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)};
}

const std::map<std::string, std::string> kDeterministicRun = {
    {"localSteps", "150"}, {"minFitClients", "3"}, {"minAvailableClients", "3"}, {"roundTimeoutSeconds", "60"}};

// The aggregator SIGKILLed at a random point and restarted gives the same global parameters,
// round by round, bit for bit, as the run that was never interrupted: every round's update
// depends only on that round's global (AdamW restarts each round), and the average does not
// depend on the order updates arrive in.
// Runs `settings` uninterrupted, then again with the aggregator SIGKILLed at a random point and
// restarted; expects the same global digests round by round. Returns the interrupted run's outputs.
std::string killed_and_resumed_equals_uninterrupted(const std::string& tag, const std::map<std::string, std::string>& settings) {
  const auto [expected, duration] = uninterrupted(tag + "-a", settings);
  EXPECT_EQ(expected.size(), 7u);
  Federation f(tag + "-b", 3, 6, settings);
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  std::this_thread::sleep_for(random_moment(duration));  // the fault's moment, not a wait for a condition
  f.aggregator->signal(SIGKILL);
  f.aggregator->wait(10s);
  f.start_aggregator();
  EXPECT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_EQ(f.global_digests(), expected) << f.logs();
  // The ledger goes on as one chain across the kill (a round the kill cut short is recorded once,
  // when it completed).
  int verified = -1;
  const std::string verdict = run_command(bin("zk0") + " ledger verify " + f.out + " 2>&1", &verified);
  EXPECT_EQ(verified, 0) << verdict;
  EXPECT_NE(verdict.find("updates, 6 rounds, "), std::string::npos) << verdict;
  return f.out;
}

TEST(Federation, ARunKilledAtARandomPointAndResumedIsTheUninterruptedRunBitForBit) {
  killed_and_resumed_equals_uninterrupted("det", kDeterministicRun);
}

// The same with a robust rule over clipped, spilled updates and a server optimiser: FedAdam's
// moments travel in the checkpoint (strategy_state.safetensors) and a killed round's spilled
// updates are cleared on restart.
TEST(Federation, ARobustFedAdamRunKilledAndResumedIsTheUninterruptedRunBitForBit) {
  auto settings = kDeterministicRun;
  settings["aggregation"] = "aggregation: {rule: median}\n    clipping: {quantile: 0.9}\n    serverOptimizer: {type: adam, lr: 0.05}";
  const std::string out = killed_and_resumed_equals_uninterrupted("adam", settings);
  EXPECT_TRUE(fs::exists(out + "/checkpoints/round_0006/strategy_state.safetensors"));
  // A kill after the last round leaves the restarted aggregator nothing to spill: no folder at all.
  EXPECT_TRUE(!fs::exists(out + "/scratch") || fs::is_empty(out + "/scratch"));
}

// Under a codec every global is the previous one plus an encoded step, and a resumed aggregator
// (no steps kept) serves the whole global: the workers' rebuilt globals and the run's digests
// stay those of the uninterrupted run. With error feedback: a worker that encodes again from the
// global of a round the aggregator lost uses the residual it had before that round's encoding.
TEST(Federation, ACompressedRunKilledAndResumedIsTheUninterruptedRunBitForBit) {
  auto settings = kDeterministicRun;
  settings["tls"] = "    compression: {codec: int8, blockSize: 64, errorFeedback: true}\n";
  killed_and_resumed_equals_uninterrupted("int8", settings);
}

// optimizer.state: keep carries AdamW's moments from a client's round to its next; persisted in
// the worker's state directory, a worker SIGKILLed at a random point and restarted continues as
// if it never stopped.
TEST(Federation, KeptOptimizerStateSurvivesAWorkerKilledAtARandomPoint) {
  auto settings = kDeterministicRun;
  settings["optimizerState"] = "keep";
  const auto [expected, duration] = uninterrupted("keep-a", settings);
  Federation reset("keep-reset", 3, 6, kDeterministicRun);  // keep must change training at all
  reset.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) reset.start_worker(n);
  ASSERT_EQ(reset.aggregator->wait(180s), 0) << reset.logs();
  EXPECT_NE(reset.global_digests().back(), expected.back());
  EXPECT_EQ(reset.global_digests()[1], expected[1]);  // round 1 starts from zero moments either way

  Federation f("keep-b", 3, 6, settings);
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  std::this_thread::sleep_for(random_moment(duration));  // the fault's moment
  f.workers["c1"]->signal(SIGKILL);
  f.workers["c1"]->wait(10s);
  f.start_worker("c1");
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_EQ(f.global_digests(), expected) << f.logs();
  EXPECT_TRUE(file_exists(f.dir + "/state/c1/optimizer"));
}

TEST(Federation, UnauthenticatedClientRefusedUnderMutualTls) {
  const std::string dir = make_temp_dir("mtls");
  const Certificates certs = generate_certificates(dir);
  const std::map<std::string, std::string> tls = {{"tls", mutual_tls_block(certs)}, {"clientExtra", client_tls_extra(certs)}};
  auto with = [&](std::map<std::string, std::string> more) {
    more.insert(tls.begin(), tls.end());
    return more;
  };
  Federation f("mtls", 2, 1, with({{"startTimeoutSeconds", "8"}}));
  // c1's process holds a certificate naming c0, from a CA the aggregator does not trust.
  std::string rogue = small_spec(f.out, 2, 1, with({{"startTimeoutSeconds", "4"}}));
  rogue.replace(rogue.find(certs.client_cert("c1")), certs.client_cert("c1").size(), certs.rogue_cert);
  rogue.replace(rogue.find(certs.client_key("c1")), certs.client_key("c1").size(), certs.rogue_key);
  const std::string rogue_spec = f.dir + "/rogue.yaml";
  std::ofstream(rogue_spec) << rogue;
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1", rogue_spec);
  EXPECT_NE(f.workers["c1"]->wait(60s), 0);
  EXPECT_NE(f.workers["c1"]->log().find("aggregator_unreachable"), std::string::npos) << f.workers["c1"]->log();
  ASSERT_TRUE(wait_until([&] { return f.aggregator->log().find("client_registered client=c0") != std::string::npos; }, 30s))
      << f.logs();
  EXPECT_EQ(f.aggregator->log().find("client=c1"), std::string::npos);
  // Without enough trusted clients the run ends at the start timeout instead of waiting forever.
  EXPECT_EQ(f.aggregator->wait(60s), kExitRunFailed);
  EXPECT_EQ(f.status()["phase"], "Failed");
  EXPECT_NE(f.status()["message"].get<std::string>().find("startTimeoutSeconds"), std::string::npos);
}

// A certificate from the run's CA names one client: whoever holds c1's cannot register as c0,
// nor take over c0's session by registering again under its name.
TEST(Federation, ClientsSwappingCertificatesAreRefusedAndCounted) {
  const std::string dir = make_temp_dir("mtls-swap");
  const Certificates certs = generate_certificates(dir);
  Federation f("mtls-swap", 2, 2, {{"tls", mutual_tls_block(certs)}, {"clientExtra", client_tls_extra(certs)},
                                   {"localSteps", "200"}, {"startTimeoutSeconds", "20"}});
  const std::string port_file = f.dir + "/metrics.port";
  f.aggregator = std::make_unique<Process>(std::vector<std::string>{bin("zk0-aggregator"), "--spec", f.spec, "--listen", f.address(),
                                                                    "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file},
                                           f.dir + "/aggregator.log");
  // Two impostors, each naming itself by the other's name: the process for c0 presents c1's
  // certificate and the one for c1 presents c0's.
  std::string swapped = read_file(f.spec);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{{"c0.pem", "cX.pem"}, {"c0.key", "cX.key"},
                                                                                {"c1.pem", "c0.pem"}, {"c1.key", "c0.key"},
                                                                                {"cX.pem", "c1.pem"}, {"cX.key", "c1.key"}})
    for (size_t at; (at = swapped.find("/" + from)) != std::string::npos;) swapped.replace(at + 1, from.size(), to);
  const std::string swapped_spec = f.dir + "/swapped.yaml";
  std::ofstream(swapped_spec) << swapped;
  f.start_worker("c0", swapped_spec);
  EXPECT_NE(f.workers["c0"]->wait(60s), 0);
  EXPECT_NE(f.workers["c0"]->log().find("registration_refused"), std::string::npos) << f.workers["c0"]->log();
  EXPECT_NE(f.workers["c0"]->log().find("issued to client 'c1'"), std::string::npos) << f.workers["c0"]->log();
  // The honest c1 registers; then the impostor holding c0's certificate tries to rejoin as c1.
  f.start_worker("c1");
  ASSERT_TRUE(wait_until([&] { return f.aggregator->log().find("client_registered client=c1") != std::string::npos; }, 30s)) << f.logs();
  Process impostor({bin("zk0-worker"), "--spec", swapped_spec, "--client", "c1", "--aggregator", f.address(), "--metrics-listen",
                    "127.0.0.1:0"},
                   f.dir + "/impostor.log");
  EXPECT_NE(impostor.wait(60s), 0);
  EXPECT_NE(impostor.log().find("issued to client 'c0'"), std::string::npos) << impostor.log();
  EXPECT_EQ(f.aggregator->log().find("client_rejoined client=c1"), std::string::npos) << "the impostor took over c1";
  // Each refusal is logged with its reason and counted.
  const std::string log = f.aggregator->log();
  EXPECT_NE(log.find("event=registration_refused client=c0 reason=identity_mismatch"), std::string::npos) << log;
  EXPECT_NE(log.find("event=registration_refused client=c1 reason=identity_mismatch"), std::string::npos) << log;
  ASSERT_TRUE(file_exists(port_file));
  const int port = std::stoi(read_file(port_file));
  EXPECT_TRUE(wait_until([&] {
    return http_get(port, "/metrics").find("zk0_aggregator_registrations_refused_total{reason=\"identity_mismatch\",run=\"test-run\"} 2") !=
           std::string::npos;
  }, 10s)) << http_get(port, "/metrics");
  // With its own certificate c0 joins, and the run completes with both.
  f.start_worker("c0");
  EXPECT_EQ(f.aggregator->wait(120s), 0) << f.logs();
  EXPECT_EQ(f.metrics()["rounds"][2]["clients_accepted"], 2);
}

// A robust rule in a whole run: Multi-Krum keeping 2 of 3 updates each round leaves one out, and
// says so in federated_metrics.json, status.json, the metrics and the log.
TEST(Federation, UpdatesARuleDiscardsAreRecordedEverywhere) {
  Federation f("multikrum", 3, 3, {{"minFitClients", "3"}, {"minAvailableClients", "3"}, {"localSteps", "150"},
                                   {"aggregation", "aggregation: {rule: multiKrum, byzantine: 0, select: 2}"}});
  const std::string port_file = f.dir + "/metrics.port";
  f.aggregator = std::make_unique<Process>(std::vector<std::string>{bin("zk0-aggregator"), "--spec", f.spec, "--listen", f.address(),
                                                                    "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file},
                                           f.dir + "/aggregator.log");
  for (const char* c : {"c0", "c1", "c2"}) f.start_worker(c);
  ASSERT_TRUE(wait_until([&] { return file_exists(port_file); }, 30s)) << f.logs();
  const int port = std::stoi(read_file(port_file));
  const std::string series = "zk0_aggregator_updates_discarded_total{rule=\"multiKrum\",run=\"test-run\"} ";
  EXPECT_TRUE(wait_until([&] {
    const std::string body = http_get(port, "/metrics");
    const auto at = body.find(series);
    return at != std::string::npos && std::stod(body.substr(at + series.size())) >= 1;
  }, 120s)) << http_get(port, "/metrics") << f.logs();
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  const auto rounds = f.metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 4u);
  for (int r = 1; r <= 3; ++r) {
    EXPECT_EQ(rounds[r]["aggregation_rule"], "multiKrum");
    EXPECT_EQ(rounds[r]["clients_accepted"], 2);
    EXPECT_EQ(rounds[r]["clients_discarded"], 1);
    int discarded = 0;
    for (const auto& c : rounds[r]["clients"]) {
      if (c["status"] != "discarded") continue;
      ++discarded;
      EXPECT_NE(c["reason"].get<std::string>().find("multiKrum: score"), std::string::npos) << c.dump();
      EXPECT_GT(c["distance_from_global"].get<double>(), 0) << "a discarded update is still described";
    }
    EXPECT_EQ(discarded, 1) << rounds[r].dump();
  }
  EXPECT_EQ(f.status()["discarded_updates"]["multiKrum"], 3);
  EXPECT_NE(f.aggregator->log().find("event=update_discarded"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(f.out + "/scratch")) << "the rounds' spilled updates are removed";
}

TEST(Federation, MutualTlsRunCompletes) {
  const std::string dir = make_temp_dir("mtls-ok");
  const Certificates certs = generate_certificates(dir);
  Federation f("mtls-ok", 2, 1, {{"tls", mutual_tls_block(certs)}, {"clientExtra", client_tls_extra(certs)}});
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1");
  EXPECT_EQ(f.aggregator->wait(120s), 0) << f.logs();
  EXPECT_NE(f.aggregator->log().find("mutual_tls=1"), std::string::npos);
}

// `tls: {mutual: true}` alone: zk0 run issues a CA and a certificate per process, each client's
// naming it, and the run completes under mutual TLS.
TEST(Federation, LocalRunIssuesItsOwnCertificatesForMutualTls) {
  const std::string dir = make_temp_dir("mtls-local");
  const std::string spec = write_spec(dir, small_spec(dir + "/out", 2, 1, {{"tls", "    tls: {mutual: true}"}}));
  Process run({bin("zk0"), "run", spec}, dir + "/zk0.log");
  ASSERT_EQ(run.wait(120s), 0) << run.log();
  EXPECT_NE(run.log().find("mutual TLS with certificates issued for this run"), std::string::npos) << run.log();
  EXPECT_NE(read_file(dir + "/out/logs/aggregator.log").find("mutual_tls=1"), std::string::npos);
  for (const char* client : {"c0", "c1"}) {
    const std::string cert = dir + "/out/tls/clients/" + std::string(client) + ".crt";
    EXPECT_NE(run_command("openssl x509 -noout -ext subjectAltName -in " + cert).find("spiffe://zk0.io/run/test-run/client/" + std::string(client)),
              std::string::npos);
  }
  EXPECT_EQ(std::filesystem::status(dir + "/out/tls/clients/c0.key").permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
}

TEST(Federation, BrokenDatasetFailsThatClientWhileQuorumHolds) {
  Federation f("broken", 3, 2, {{"minFitClients", "2"}, {"minAvailableClients", "2"}, {"checkpointEvery", "2"}});
  std::string yaml = read_file(f.spec);
  const std::string c2 = "{synthetic: {task: \"task 2\", episodes: 6, episodeLength: 40, seed: 2}}";
  yaml.replace(yaml.find(c2), c2.size(), "{path: " + f.dir + "/no-such-dataset}");
  std::ofstream(f.spec) << yaml;
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  EXPECT_EQ(f.workers["c2"]->wait(60s), 1);
  ASSERT_EQ(f.aggregator->wait(120s), 0) << f.logs();
  const auto c2_status = f.status()["clients"]["c2"];
  EXPECT_EQ(c2_status["state"], "failed");
  EXPECT_NE(c2_status["failure"].get<std::string>().find("no-such-dataset"), std::string::npos) << c2_status.dump();
  // checkpoints.everyRounds: 2 writes round 2 only.
  EXPECT_FALSE(file_exists(f.out + "/checkpoints/round_0001"));
  EXPECT_TRUE(file_exists(f.out + "/checkpoints/round_0002/SHA256SUMS"));
}

TEST(Federation, RoundWithoutQuorumIsRetriedThenTheRunFails) {
  Federation f("quorum", 2, 2, {{"localSteps", "100000"}, {"roundTimeoutSeconds", "2"}, {"maxRoundAttempts", "maxRoundAttempts: 2"}});
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1");
  EXPECT_EQ(f.aggregator->wait(90s), kExitRunFailed) << f.logs();
  const std::string log = f.aggregator->log();
  EXPECT_NE(log.find("event=quorum_lost round=1 attempt=1"), std::string::npos) << log;
  EXPECT_NE(log.find("event=quorum_lost round=1 attempt=2"), std::string::npos);
  EXPECT_NE(f.status()["message"].get<std::string>().find("not reached in 2 attempts"), std::string::npos);
  EXPECT_NE(log.find("event=client_straggled"), std::string::npos);
  // The run ended; the workers are told to finish.
  for (const auto& [n, w] : f.workers) EXPECT_EQ(w->wait(60s), 0) << w->log();
}

TEST(Federation, CtrlCStopsEveryChild) {
  const std::string dir = make_temp_dir("sigint");
  const std::string spec = write_spec(dir, small_spec(dir + "/out", 2, 50, {{"localSteps", "200"}}));
  Process run({bin("zk0"), "run", spec}, dir + "/zk0.log");
  ASSERT_TRUE(wait_until([&] { return file_exists(dir + "/out/rounds/round_0001.json"); }, 60s)) << run.log();
  EXPECT_TRUE(any_process_mentions(spec));
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(30s), 130) << run.log();
  EXPECT_FALSE(any_process_mentions(spec));
  // What was written stays valid: the metrics parse and the latest checkpoint verifies.
  EXPECT_NO_THROW(read_json(dir + "/out/federated_metrics.json"));
}

TEST(Federation, InvalidSpecExitsWithTheFieldPath) {
  const std::string dir = make_temp_dir("badspec");
  std::ofstream(dir + "/bad.yaml") << "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: x}\nspec: {rounds: 0}\n";
  Process run({bin("zk0"), "run", dir + "/bad.yaml"}, dir + "/zk0.log");
  EXPECT_EQ(run.wait(20s), 2);
  EXPECT_NE(run.log().find("spec.rounds: must be at least 1"), std::string::npos) << run.log();
  EXPECT_NE(run.log().find("spec.clients: a non-empty list is required"), std::string::npos);
}

// The same file runs on a cluster: `zk0 run` says which cluster-only fields it ignores, and
// refuses the sources only a cluster can mount.
TEST(Federation, LocalRunIgnoresPlacementAndRefusesClusterOnlySources) {
  const std::string dir = make_temp_dir("cluster-fields");
  std::string yaml = small_spec(dir + "/out", 2, 1, {{"clientExtra", "      pod: {nodeSelector: {robot: a}}\n"}});
  yaml += "  runPolicy: {backoffLimit: 5}\n";
  Process ok({bin("zk0"), "run", write_spec(dir, yaml)}, dir + "/ok.log");
  EXPECT_EQ(ok.wait(120s), 0) << ok.log();
  EXPECT_NE(ok.log().find("ignored on this machine (cluster only): spec.clients[0].pod,spec.clients[1].pod,spec.runPolicy"),
            std::string::npos)
      << ok.log();
  std::string claim = small_spec(dir + "/out2", 2, 1);
  const std::string source = "{synthetic: {task: \"task 1\"";
  claim.replace(claim.find(source), claim.find("}}", claim.find(source)) + 2 - claim.find(source), "{volumeClaim: {claimName: robot-b}}");
  std::ofstream(dir + "/claim.yaml") << claim;
  Process refused({bin("zk0"), "run", dir + "/claim.yaml"}, dir + "/refused.log");
  EXPECT_EQ(refused.wait(20s), kExitInvalidInput);
  EXPECT_NE(refused.log().find("spec.clients[1].dataset.volumeClaim: name the dataset by path on this machine"), std::string::npos)
      << refused.log();
}

namespace {

// The value of the first series `prefix` starts (its name and labels up to the value), or -1.
double sample_value(const std::string& exposition, const std::string& prefix) {
  const size_t at = exposition.find(prefix);
  if (at == std::string::npos) return -1;
  const size_t space = exposition.find(' ', at + prefix.size() - 1);
  return std::stod(exposition.substr(space + 1, exposition.find('\n', space) - space - 1));
}

}  // namespace

TEST(Federation, AggregatorExportsPrometheusMetrics) {
  // Long rounds: every expected value is observed while the processes still serve it.
  Federation f("metrics", 2, 3, {{"localSteps", "300"}});
  const std::string port_file = f.dir + "/metrics.port";
  f.aggregator = std::make_unique<Process>(std::vector<std::string>{bin("zk0-aggregator"), "--spec", f.spec, "--listen", f.address(),
                                                                    "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file},
                                           f.dir + "/aggregator.log");
  ASSERT_TRUE(wait_until([&] { return file_exists(port_file) || !f.aggregator->running(); }, 30s) && file_exists(port_file))
      << f.logs();
  const int port = std::stoi(read_file(port_file));
  f.start_worker("c0");
  f.start_worker("c1");
  ASSERT_TRUE(wait_until([&] { return file_exists(f.dir + "/c0.metrics-port"); }, 30s)) << f.logs();
  const int worker_port = std::stoi(read_file(f.dir + "/c0.metrics-port"));
  const std::string run = "run=\"test-run\"", worker_labels = "client=\"c0\"," + run;
  std::string aggregator_text, worker_text, status_text;
  // Each expected value, polled until it shows (a scrape is a moment; a round is longer).
  const auto reaches = [&](int metrics_port, std::string& last, const std::string& series, double at_least) {
    return wait_until(
        [&] {
          const std::string body = http_get(metrics_port, "/metrics");
          if (!body.empty()) last = body;
          return sample_value(last, series) >= at_least;
        },
        60s);
  };
  EXPECT_TRUE(reaches(port, aggregator_text, "zk0_aggregator_rounds_completed_total{" + run + "}", 2)) << aggregator_text;
  EXPECT_TRUE(reaches(port, aggregator_text, "zk0_aggregator_updates_accepted_total{" + run + "}", 4)) << aggregator_text;
  EXPECT_TRUE(reaches(worker_port, worker_text, "zk0_worker_rounds_trained_total{" + worker_labels + "}", 2)) << worker_text;
  EXPECT_TRUE(reaches(worker_port, worker_text, "zk0_worker_local_step_duration_seconds_count{" + worker_labels + "}", 600))
      << worker_text;
  EXPECT_TRUE(wait_until([&] { return !(status_text = http_get(port, "/status")).empty(); }, 10s));
  EXPECT_EQ(f.aggregator->wait(120s), 0) << f.logs();

  EXPECT_NE(aggregator_text.find("zk0_build_info{component=\"aggregator\""), std::string::npos) << aggregator_text;
  // Every series names its run (and, from workers, its client): dashboards filter by them.
  EXPECT_NE(aggregator_text.find("zk0_aggregator_transfer_bytes_total{direction=\"upload\"," + run + "}"), std::string::npos);
  EXPECT_NE(aggregator_text.find("zk0_aggregator_server_eval_loss{" + run + "} "), std::string::npos);
  EXPECT_NE(aggregator_text.find("zk0_aggregator_registrations_refused_total{reason=\"identity_mismatch\"," + run + "} 0"),
            std::string::npos);
  // gRPC server metrics from the interceptor: every worker registered once, with status OK.
  EXPECT_EQ(sample_value(aggregator_text, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Register\",grpc_service=\"zk0.v1.Federation\","
                                          "grpc_type=\"unary\"," + run + "}"),
            2)
      << aggregator_text;
  EXPECT_NE(aggregator_text.find("grpc_server_handling_seconds_count{grpc_method=\"Register\""), std::string::npos);
  EXPECT_NE(worker_text.find("zk0_worker_transfer_bytes_total{direction=\"upload\"," + worker_labels + "}"), std::string::npos);
  // GET /status answers the status.json document.
  const auto status = nlohmann::json::parse(status_text);
  EXPECT_EQ(status["run"], "test-run");
  EXPECT_EQ(status["rounds"], 3);
  // Prometheus's own linter accepts both expositions.
  for (const auto& [name, text] : {std::pair<std::string, std::string>{"aggregator", aggregator_text}, {"worker", worker_text}}) {
    std::ofstream(f.dir + "/" + name + ".txt") << text;
    EXPECT_EQ(std::system(("promtool check metrics < " + f.dir + "/" + name + ".txt > " + f.dir + "/promtool.log 2>&1").c_str()), 0)
        << name << ": " << read_file(f.dir + "/promtool.log");
  }
}

// --- Links that drop mid-transfer ---

namespace {
// The value of `key` in the first log line of `event` (empty when there is none).
std::string logged(const std::string& log, const std::string& event, const std::string& key) {
  const size_t line = log.find("event=" + event + " ");
  if (line == std::string::npos) return "";
  const size_t end = log.find('\n', line);
  const size_t at = log.find(" " + key + "=", line);
  if (at == std::string::npos || at > end) return "";
  const size_t from = at + key.size() + 2;
  return log.substr(from, log.find_first_of(" \n", from) - from);
}
}  // namespace

TEST(Transfers, ALinkCutMidDownloadAndMidUploadResumesFromTheLastVerifiedChunk) {
  // 4 KiB chunks cut the ~90 KB update into ~22; c0's link is reset (RST, mid-message) once half
  // of a download has crossed it and once half of an upload has. Both transfers continue from
  // their last verified chunk, and the run ends bit for bit where an unbroken one does.
  const std::map<std::string, std::string> settings = {{"chunkSize", "4Ki"}, {"strategyType", "fedavg"}, {"proximalMu", ""}};
  Federation reference("resume-reference", 2, 2, settings);
  reference.start_aggregator();
  for (const char* n : {"c0", "c1"}) reference.start_worker(n);
  ASSERT_EQ(reference.aggregator->wait(120s), 0) << reference.logs();
  const uint64_t update_bytes = reference.metrics()["rounds"][1]["clients"][0]["bytes_uploaded"].get<uint64_t>();

  Federation f("resume", 2, 2, settings);
  f.start_aggregator();
  TcpRelay link(f.port, 2 << 20);  // 2 MiB/s: a home uplink's pace, a transfer in ~45 ms
  link.cut_after(TcpRelay::ToClient, update_bytes / 2);
  link.cut_after(TcpRelay::ToServer, update_bytes / 2);
  f.start_worker("c0", "", "127.0.0.1:" + std::to_string(link.port()));
  f.start_worker("c1");
  ASSERT_EQ(f.aggregator->wait(120s), 0) << f.logs();
  EXPECT_EQ(f.workers["c0"]->wait(30s), 0) << f.logs();
  EXPECT_EQ(link.cuts(TcpRelay::ToClient), 1);
  EXPECT_EQ(link.cuts(TcpRelay::ToServer), 1);

  const std::string worker = f.workers["c0"]->log(), aggregator = f.aggregator->log();
  // The download went on from where the worker's verified bytes ended: more than nothing, less than all.
  const std::string download_kept = logged(worker, "download_resumed", "bytes_kept");
  ASSERT_FALSE(download_kept.empty()) << worker;
  EXPECT_GT(std::stoull(download_kept), 0u);
  EXPECT_LT(std::stoull(download_kept), update_bytes);
  EXPECT_EQ(logged(aggregator, "download_resumed", "bytes_kept"), download_kept) << aggregator;
  // The upload asked the aggregator what it kept and sent only the rest: the bytes sent twice are
  // at most those beyond the kept ones (all the update, had it started again).
  const std::string upload_kept = logged(worker, "upload_resumed", "bytes_kept");
  ASSERT_FALSE(upload_kept.empty()) << worker;
  EXPECT_GT(std::stoull(upload_kept), 0u);
  EXPECT_EQ(logged(aggregator, "upload_resumed", "bytes_kept"), upload_kept) << aggregator;
  const std::string resent = logged(worker, "update_uploaded", "bytes_resent");
  ASSERT_FALSE(resent.empty()) << worker;
  EXPECT_LE(std::stoull(resent), update_bytes - std::stoull(upload_kept));
  for (const auto& round : f.metrics()["rounds"])
    for (const auto& c : round.value("clients", nlohmann::json::array())) {
      EXPECT_EQ(c["status"], "accepted") << c.dump();
      EXPECT_EQ(c["bytes_uploaded"].get<uint64_t>(), update_bytes) << c.dump();
    }
  EXPECT_EQ(f.global_digests(), reference.global_digests());
}

// A worker whose link is down for longer than the heartbeat timeout, the process running on: the
// round in progress drops it, the rounds after go on without it, and once the link is back the
// same process (no restart, its session found gone or kept) is selected again and counted.
// A worker behind a home link: 20 Mbit/s each way, 50 ms one way (a user-space link,
// tests/support/tcp_relay.h: this kernel has no netem). Its float32 update of ~4 MB takes
// seconds each way; its heartbeats share the connection and keep it alive through every
// transfer. With int8 a quarter of the bytes cross each way (downloads as encoded steps after the
// first round), and the round's transfer time falls with them.
TEST(Transfers, OnASlowLinkTransfersShrinkWithTheCodecAndHeartbeatsPassWhileOneIsInFlight) {
  constexpr uint64_t kLinkBytesPerSecond = 20'000'000 / 8;
  std::map<std::string, double> seconds, bytes;
  for (const std::string codec : {"none", "int8"}) {
    SCOPED_TRACE(codec);
    Federation f("slow-link-" + codec, 1, 3, {{"hiddenDim", "480"}, {"localSteps", "2"}, {"minFitClients", "1"},
                                              {"minAvailableClients", "1"}, {"tls", codec == "none" ? "" : "    compression: {codec: int8}\n"}});
    f.start_aggregator();
    TcpRelay link(f.port, kLinkBytesPerSecond, 50ms);
    f.start_worker("c0", "", "127.0.0.1:" + std::to_string(link.port()));
    ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
    const auto rounds = f.metrics()["rounds"];
    for (int r = 2; r <= 3; ++r) {  // after the first round, whose download is the whole global either way
      const auto& p = rounds[r]["clients"][0];
      ASSERT_EQ(p["status"], "accepted") << p.dump();
      seconds[codec] += p["download_seconds"].get<double>() + p["upload_seconds"].get<double>();
      bytes[codec] += p["bytes_downloaded"].get<double>() + p["bytes_uploaded"].get<double>();
    }
    // The link, not the machine, set the pace: the bytes took at least their time on it.
    EXPECT_GE(seconds[codec], 0.9 * bytes[codec] / kLinkBytesPerSecond) << f.logs();
    // No heartbeat went missing while seconds of parameters crossed the link.
    EXPECT_EQ(f.aggregator->log().find("event=client_dropped"), std::string::npos) << f.logs();
    EXPECT_EQ(f.workers["c0"]->log().find("event=round_abandoned"), std::string::npos) << f.logs();
  }
  std::printf("slow link, rounds 2-3: float32 %.1f MB in %.2f s, int8 %.1f MB in %.2f s\n", bytes["none"] / 1e6, seconds["none"],
              bytes["int8"] / 1e6, seconds["int8"]);
  EXPECT_GT(bytes["none"], 4 * kLinkBytesPerSecond) << "the float32 transfers should take seconds on this link";
  EXPECT_LE(bytes["int8"], 0.27 * bytes["none"]);
  EXPECT_LT(seconds["int8"], 0.4 * seconds["none"]);
}

// A round's deadline passing while a worker's update is still crossing its slow link: the round
// closes on time with the update it has, the aggregator stops receiving the rest (it would hold an
// upload slot and the owner's uplink for bytes no round wants), and the worker, kept in the run by
// its heartbeats and its transfers' progress, is given the next round. At 20 Mbit/s c0's float32
// update (~19 MB) takes ~8 s each way: its upload starts ~8 s into round 1 and the deadline, at
// 11 s, cuts it early.
TEST(Transfers, ARoundDeadlinePassingMidUploadClosesTheRoundOnTimeAndStopsTheTransfer) {
  constexpr uint64_t kLinkBytesPerSecond = 20'000'000 / 8;
  constexpr double kRoundTimeout = 11;
  Federation f("deadline-mid-upload", 2, 2, {{"hiddenDim", "1200"}, {"localSteps", "2"}, {"minFitClients", "1"},
                                             {"minAvailableClients", "2"}, {"roundTimeoutSeconds", "11"}, {"chunkSize", "1Mi"}});
  f.start_aggregator();
  TcpRelay link(f.port, kLinkBytesPerSecond);
  f.start_worker("c0", "", "127.0.0.1:" + std::to_string(link.port()));
  f.start_worker("c1");
  ASSERT_EQ(f.aggregator->wait(120s), 0) << f.logs();
  const auto rounds = f.metrics()["rounds"];
  uint64_t update_bytes = 0;
  for (int r = 1; r <= 2; ++r) {
    std::map<std::string, nlohmann::json> by_client;
    for (const auto& c : rounds[r]["clients"]) by_client[c["client"].get<std::string>()] = c;
    ASSERT_EQ(by_client["c1"]["status"], "accepted") << rounds[r].dump();
    update_bytes = by_client["c1"]["bytes_uploaded"].get<uint64_t>();
    EXPECT_EQ(by_client["c0"]["status"], "timed_out") << rounds[r].dump();
    // Closed at its deadline, not when c0's upload would have ended (~6 s later).
    EXPECT_LT(rounds[r]["duration_seconds"].get<double>(), kRoundTimeout + 2.5) << rounds[r].dump();
  }
  const std::string log = f.aggregator->log();
  const std::string event = "event=upload_stopped client=c0 round=1 reason=round_deadline bytes_received=";
  const size_t at = log.find(event);
  ASSERT_NE(at, std::string::npos) << f.logs();
  const uint64_t received = std::stoull(log.substr(at + event.size()));
  EXPECT_GT(received, 0u) << "the deadline should come while c0's update is arriving";
  EXPECT_LT(received, update_bytes) << "the deadline should come while c0's update is arriving";
  // The rest of the upload never crossed the link; c0 was told round 1 had ended, and its
  // heartbeats and transfers kept it in the run (timed out in round 2, never dropped).
  EXPECT_LT(link.carried(TcpRelay::ToServer), update_bytes);
  EXPECT_NE(f.workers["c0"]->log().find("event=round_instructed round=2"), std::string::npos) << f.logs();
  EXPECT_EQ(log.find("event=client_dropped"), std::string::npos) << f.logs();
  // Round 2 was the last: the run ended while c0's upload was on the link. c0 hears that the run
  // finished and ends as a worker that did its part, not as one that lost its aggregator.
  EXPECT_EQ(f.workers["c0"]->wait(20s), 0) << f.logs();
  EXPECT_NE(f.workers["c0"]->log().find("event=run_finished"), std::string::npos) << f.logs();
}

TEST(Transfers, AWorkerOfflineForRoundsIsLeftOutAndTakesPartAgainWhenItsLinkIsBack) {
  // Rounds of about a second, so that rounds remain when the link is back and c0 has reconnected.
  Federation f("offline", 3, 10, {{"minFitClients", "2"}, {"minAvailableClients", "2"}, {"localSteps", "400"}});
  f.start_aggregator();
  TcpRelay link(f.port);
  f.start_worker("c0", "", "127.0.0.1:" + std::to_string(link.port()));
  for (const char* n : {"c1", "c2"}) f.start_worker(n);
  const auto completed = [&] {
    try {
      return static_cast<int>(f.metrics()["rounds"].size()) - 1;
    } catch (const std::exception&) {
      return 0;
    }
  };
  ASSERT_TRUE(wait_until([&] { return completed() >= 1; }, 60s)) << f.logs();
  link.set_offline(true);
  const int offline_after = completed();
  ASSERT_TRUE(wait_until([&] { return completed() >= offline_after + 3; }, 90s)) << f.logs();
  link.set_offline(false);
  const int back_after = completed();
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_EQ(f.workers["c0"]->wait(30s), 0) << f.workers["c0"]->log();
  ASSERT_LE(back_after, 7) << "the run outpaced the test: c0 must have rounds left when it comes back";

  const auto rounds = f.metrics()["rounds"];
  const auto status_of_c0 = [&](int r) -> std::string {
    for (const auto& c : rounds[r]["clients"])
      if (c["client"] == "c0") return c["status"];
    return "not selected";
  };
  // The rounds that began with the link down (the first may have selected c0 before its
  // heartbeats stopped: it dropped out of it) completed without c0 and with the other two.
  for (int r = offline_after + 2; r <= offline_after + 3; ++r) {
    EXPECT_NE(status_of_c0(r), "accepted") << rounds[r].dump();
    EXPECT_EQ(rounds[r]["clients_accepted"], 2) << rounds[r].dump();
  }
  bool back = false;
  for (int r = back_after + 1; r < static_cast<int>(rounds.size()); ++r) back = back || status_of_c0(r) == "accepted";
  EXPECT_TRUE(back) << "c0 took no part after its link came back:\n" << rounds.dump(1) << f.workers["c0"]->log();
}

// --- Asynchronous rounds (FedBuff, spec.strategy.asynchronous) ---

namespace {

// Lets a process run one `slowdown`-th of the time (SIGCONT, then SIGSTOP), as a robot that many
// times slower would; its heartbeats still arrive well within the aggregator's timeout.
class Throttle {
 public:
  Throttle(pid_t pid, int slowdown)
      : thread_([this, pid, slowdown] {
          while (!stop_) {
            kill(pid, SIGCONT);
            std::this_thread::sleep_for(20ms);
            if (stop_) break;
            kill(pid, SIGSTOP);
            std::this_thread::sleep_for(20ms * (slowdown - 1));
          }
          kill(pid, SIGCONT);
        }) {}
  ~Throttle() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Seconds from the opening of the first round to the end of `record`.
double seconds_into_run(const nlohmann::json& rounds, const nlohmann::json& record) {
  return record["started_at"].get<double>() + record["duration_seconds"].get<double>() - rounds[1]["started_at"].get<double>();
}

// The updates the aggregator logged as accepted (client, round and place in the round's buffer).
std::set<std::string> accepted_in_log(const std::string& log) {
  std::set<std::string> out;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("event=update_accepted") == std::string::npos) continue;
    auto value = [&](const std::string& key) {
      const size_t at = line.find(" " + key + "=");
      return at == std::string::npos ? std::string() : line.substr(at + key.size() + 2, line.find(' ', at + 1) - at - key.size() - 2);
    };
    out.insert(value("client") + "@" + value("round") + "#" + value("sequence"));
  }
  return out;
}

}  // namespace

TEST(FedBuff, WithAClientTenTimesSlowerReachesTheSynchronousLossInLessTime) {
  // Two clients and one ten times slower (one thread each, so that the fast two do not slow each
  // other on this machine's two cores). Synchronous FedAvg waits for the slow one every round;
  // FedBuff folds every two updates, whichever version they were trained on (constant staleness
  // weights: the fast two alternate, so most updates are a version late, and 1/sqrt(2) would take
  // a third of each version's step; the weights' arithmetic is tested in transport_test). Ten
  // times, not five: at five a synchronous round lasts only four fast updates, and a stale update
  // of the slow client setting FedBuff back a version or two left the race to the throttle's phase.
  const std::map<std::string, std::string> common = {{"strategyType", "fedavg"}, {"proximalMu", ""}, {"localSteps", "100"},
                                                     {"minAvailableClients", "3"}, {"roundTimeoutSeconds", "120"},
                                                     {"clientExtra", "      resources: {cpu: 1}\n"}};
  auto sync_settings = common;
  sync_settings["minFitClients"] = "3";
  Federation sync("fedbuff-sync", 3, 4, sync_settings);
  sync.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) sync.start_worker(n);
  {
    Throttle slow(sync.workers["c2"]->pid(), 10);
    ASSERT_EQ(sync.aggregator->wait(300s), 0) << sync.logs();
  }
  const nlohmann::json sync_rounds = sync.metrics()["rounds"];
  const double sync_seconds = seconds_into_run(sync_rounds, sync_rounds.back());
  const double sync_loss = sync_rounds.back()["server_eval_loss"].get<double>();

  auto async_settings = common;
  async_settings["minFitClients"] = "2";
  async_settings["aggregation"] = "asynchronous: {maxStaleness: 24, stalenessWeight: constant}";
  async_settings["maxRoundAttempts"] = "";  // asynchronous rounds have no attempts
  Federation buffered("fedbuff-async", 3, 20, async_settings);
  buffered.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) buffered.start_worker(n);
  {
    Throttle slow(buffered.workers["c2"]->pid(), 10);
    ASSERT_EQ(buffered.aggregator->wait(300s), 0) << buffered.logs();
  }
  const nlohmann::json rounds = buffered.metrics()["rounds"];
  std::optional<double> reached;
  int stale_from_slow = 0;
  for (size_t r = 1; r < rounds.size(); ++r) {
    EXPECT_EQ(rounds[r]["clients"].size(), 2u) << rounds[r].dump();
    for (const auto& c : rounds[r]["clients"]) {
      EXPECT_EQ(c["staleness_weight"].get<double>(), 1.0);
      stale_from_slow += c["client"] == "c2" && c["staleness"].get<int>() > 0;
    }
    if (!reached && rounds[r]["server_eval_loss"].get<double>() <= sync_loss) reached = seconds_into_run(rounds, rounds[r]);
  }
  EXPECT_GT(stale_from_slow, 0) << "the slow client's updates should arrive versions late";
  ASSERT_TRUE(reached) << "FedBuff never reached the synchronous run's loss " << sync_loss << "\n" << rounds.dump(1);
  std::cerr << "synchronous: loss " << sync_loss << " after " << sync_seconds << " s; FedBuff reached it after " << *reached << " s\n";
  EXPECT_LT(*reached, sync_seconds);
}

TEST(FedBuff, ASlowWorkersStaleWorkIsAbandonedOrRefusedNeverFolded) {
  // maxStaleness 0: only updates of the current version count. The slow client's tasks outlive
  // their version: heartbeats tell it to give them up, and what still arrives is refused.
  Federation f("fedbuff-stale", 3, 4, {{"minFitClients", "2"}, {"minAvailableClients", "3"}, {"maxRoundAttempts", ""},
                                       {"aggregation", "asynchronous: {maxStaleness: 0}"}});
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  {
    Throttle slow(f.workers["c2"]->pid(), 8);
    ASSERT_EQ(f.aggregator->wait(300s), 0) << f.logs();
  }
  const nlohmann::json rounds = f.metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 5u);
  for (const auto& r : rounds)
    for (const auto& c : r.value("clients", nlohmann::json::array())) EXPECT_EQ(c["staleness"], 0) << r.dump();
  const std::string slow_log = f.workers["c2"]->log();
  const size_t abandoned = count_of(slow_log, "event=round_abandoned");
  const int refused = f.status()["rejected_updates"].value("too_stale", 0);
  EXPECT_GE(abandoned + refused, 1u) << f.logs();
}

TEST(FedBuff, AnAggregatorKilledWithUpdatesBufferedLosesNoneOfThem) {
  // Three updates per version from three clients: once the first of a later version is on disk,
  // the aggregator is killed before the others can arrive and fold it away.
  Federation f("fedbuff-kill", 3, 6, {{"minFitClients", "3"}, {"minAvailableClients", "3"}, {"maxRoundAttempts", ""},
                                      {"aggregation", "asynchronous: {maxStaleness: 12}"}});
  f.start_aggregator();
  for (const char* n : {"c0", "c1", "c2"}) f.start_worker(n);
  auto buffered_file = [&] {
    for (int round = 2; round <= 5; ++round) {
      char dir[64];
      std::snprintf(dir, sizeof dir, "/buffer/round-%04d", round);
      if (!fs::exists(f.out + dir)) continue;
      for (const auto& e : fs::directory_iterator(f.out + dir))
        if (e.path().extension() == ".safetensors") return true;
    }
    return false;
  };
  ASSERT_TRUE(wait_until(buffered_file, 120s)) << f.logs();
  f.aggregator->signal(SIGKILL);
  f.aggregator->wait(10s);
  const std::set<std::string> accepted_before = accepted_in_log(f.aggregator->log());
  const std::string first_log = f.aggregator->log_path();
  fs::rename(first_log, first_log + ".killed");
  f.start_aggregator();
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_NE(f.aggregator->log().find("event=buffered_update_restored"), std::string::npos) << f.aggregator->log();
  std::set<std::string> in_outputs;
  const nlohmann::json rounds = f.metrics()["rounds"];
  for (const auto& r : rounds)
    for (const auto& c : r.value("clients", nlohmann::json::array()))
      in_outputs.insert(c["client"].get<std::string>() + "@" + std::to_string(r["round"].get<int>()) + "#" +
                        std::to_string(c["sequence"].get<int>()));
  ASSERT_FALSE(accepted_before.empty());
  for (const auto& u : accepted_before) EXPECT_TRUE(in_outputs.count(u)) << "accepted before the kill, then lost: " << u;
  EXPECT_FALSE(fs::exists(f.out + "/buffer/round-0006"));  // spent once its version is checkpointed
  // Restored updates keep their workers' signed claims: the ledger verifies across the kill.
  int verified = -1;
  const std::string verdict = run_command(bin("zk0") + " ledger verify " + f.out + " 2>&1", &verified);
  EXPECT_EQ(verified, 0) << verdict;
}

namespace {

// small_spec's run under spec.strategy.privacy: Poisson sampling replaces fractionFit and the quorum.
std::string private_spec(const std::string& out, int clients, int rounds, const std::string& privacy) {
  std::string yaml = small_spec(out, clients, rounds,
                                {{"localSteps", "100"}, {"minAvailableClients", std::to_string(clients)}, {"aggregation", "privacy: " + privacy}});
  for (const char* field : {"    fractionFit:", "    minFitClients:"}) {
    const size_t at = yaml.find(field);
    yaml.erase(at, yaml.find('\n', at) + 1 - at);
  }
  return yaml;
}

}  // namespace

// Client-level DP end to end: workers clip to the adaptive clip norm the aggregator sends, the
// aggregator reports epsilon (its accountant's, equal to the closed computation) after every round
// in federated_metrics.json, status.json and its metrics, ends the run when the next round would
// pass targetEpsilon, and a run killed and resumed reports the same epsilon and, with seeded noise,
// the same global parameters bit for bit.
TEST(Privacy, EpsilonIsReportedEveryRoundTheBudgetEndsTheRunAndAResumeContinuesTheAccount) {
  const double q = 0.75, z = 0.8, delta = 1e-3;
  // A budget that three rounds fit and four do not.
  const double target = 0.5 * (epsilon_after(q, z, 3, delta) + epsilon_after(q, z, 4, delta));
  const std::string privacy = "{adaptiveClipping: {initialNorm: 0.05, countNoiseStd: 4}, clipOn: worker, samplingRate: 0.75, "
                              "noiseMultiplier: 0.8, targetEpsilon: " + std::to_string(target) + ", delta: 1.0e-3, insecureNoiseSeed: 5}";
  const auto start = [&](const std::string& tag, const std::string& port_file) {
    auto f = std::make_unique<Federation>(tag, 4, 6);
    f->spec = write_spec(f->dir, private_spec(f->out, 4, 6, privacy));
    f->aggregator = std::make_unique<Process>(std::vector<std::string>{bin("zk0-aggregator"), "--spec", f->spec, "--listen", f->address(),
                                                                       "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file},
                                              f->dir + "/aggregator.log");
    for (const char* n : {"c0", "c1", "c2", "c3"}) f->start_worker(n);
    return f;
  };

  const std::string port_file = make_temp_dir("dp-metrics") + "/metrics.port";
  auto a = start("dp-a", port_file);
  ASSERT_TRUE(wait_until([&] { return file_exists(port_file) || !a->aggregator->running(); }, 30s) && file_exists(port_file)) << a->logs();
  std::string exposition;
  const std::string gauge = "zk0_aggregator_privacy_epsilon{run=\"test-run\"}";
  EXPECT_TRUE(wait_until(
      [&] {
        const std::string body = http_get(std::stoi(read_file(port_file)), "/metrics");
        if (!body.empty()) exposition = body;
        return sample_value(exposition, gauge) >= epsilon_after(q, z, 2, delta) * (1 - 1e-9);
      },
      120s))
      << exposition;
  ASSERT_EQ(a->aggregator->wait(180s), 0) << a->logs();
  const auto rounds = a->metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 4u) << rounds.dump();  // rounds 0..3: the fourth would pass the target
  std::set<double> clip_norms;
  size_t clipped = 0;
  for (int r = 1; r <= 3; ++r) {
    const auto& p = rounds[r]["privacy"];
    EXPECT_NEAR(p["epsilon"].get<double>(), epsilon_after(q, z, r, delta), 1e-9 * epsilon_after(q, z, r, delta)) << p.dump();
    EXPECT_EQ(p["releases"], r);
    EXPECT_EQ(p["clip_on"], "worker");
    clip_norms.insert(p["clip_norm"].get<double>());
    for (const auto& c : rounds[r]["clients"]) {
      if (c["status"] != "accepted") continue;
      EXPECT_LE(c["distance_from_global"].get<double>(), p["clip_norm"].get<double>() * (1 + 1e-5)) << c.dump();
      clipped += c.value("clip_reason", std::string()).find("clipped by the worker") != std::string::npos;
    }
  }
  EXPECT_EQ(clip_norms.size(), 3u);  // adaptive: the clip norm moved every round
  EXPECT_GT(clipped, 0u) << rounds.dump();
  const auto status = a->status();
  EXPECT_EQ(status["phase"], "Succeeded");
  EXPECT_NEAR(status["privacy_epsilon"].get<double>(), rounds[3]["privacy"]["epsilon"].get<double>(), 1e-12);
  EXPECT_NE(status["message"].get<std::string>().find("privacy budget spent"), std::string::npos) << status.dump();
  EXPECT_NE(a->aggregator->log().find("event=privacy_budget_spent"), std::string::npos);
  EXPECT_LE(sample_value(exposition, gauge), target);

  // Killed after round 2's checkpoint and restarted: the same account, the same models.
  auto b = start("dp-b", make_temp_dir("dp-metrics-b") + "/metrics.port");
  ASSERT_TRUE(wait_until([&] { return b->latest_checkpoint() == "round_0002"; }, 120s)) << b->logs();
  b->aggregator->signal(SIGKILL);
  b->aggregator->wait(10s);
  b->start_aggregator();
  ASSERT_EQ(b->aggregator->wait(180s), 0) << b->logs();
  EXPECT_EQ(b->metrics()["rounds"][3]["privacy"]["epsilon"], rounds[3]["privacy"]["epsilon"]);
  EXPECT_EQ(b->global_digests(), a->global_digests()) << b->logs();
}

// Sample-level DP (DP-SGD) end to end: each worker Poisson-samples its frames, clips every
// sample's gradient, adds the noise, reports its own epsilon with every update (the accountant's
// value for q = batchSize / frames and the steps it ran), keeps its accountant in its state
// folder, and stops taking part, saying why, before a round that would pass its target.
TEST(Privacy, EachWorkerReportsItsSampleLevelEpsilonAndStopsAtItsBudget) {
  const double frames = 6 * 40, q = 32 / frames, z = 1.1, delta = 1e-5;
  const long steps = 20;  // small_spec's localSteps
  const double target = 0.5 * (epsilon_after(q, z, 2 * steps, delta) + epsilon_after(q, z, 3 * steps, delta));
  Federation f("dpsgd", 2, 4);
  std::string yaml = small_spec(f.out, 2, 4, {{"minFitClients", "2"}, {"minAvailableClients", "2"}, {"maxRoundAttempts", "maxRoundAttempts: 1"}});
  yaml.replace(yaml.find("    seed: 11\n"), 12,
               "    seed: 11\n    privacy: {clipNorm: 1.0, noiseMultiplier: 1.1, targetEpsilon: " + std::to_string(target) +
                   ", delta: 1.0e-5, insecureNoiseSeed: 2}\n");
  f.spec = write_spec(f.dir, yaml);
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1");
  // Two rounds fit the budget; before the third each worker stops, and the round has no quorum.
  EXPECT_EQ(f.aggregator->wait(180s), kExitRunFailed) << f.logs();
  for (const auto& [name, w] : f.workers) {
    EXPECT_EQ(w->wait(30s), 0) << w->log();
    EXPECT_NE(w->log().find("event=privacy_budget_spent"), std::string::npos) << w->log();
    const auto saved = read_json(f.dir + "/state/" + name + "/privacy_accountant.json");
    EXPECT_EQ(saved["accountant"]["releases"][0]["steps"], 2 * steps);
  }
  const auto rounds = f.metrics()["rounds"];
  ASSERT_EQ(rounds.size(), 3u) << rounds.dump();
  for (int r = 1; r <= 2; ++r)
    for (const auto& c : rounds[r]["clients"]) {
      ASSERT_EQ(c["status"], "accepted") << c.dump();
      const double expected = epsilon_after(q, z, r * steps, delta);
      EXPECT_NEAR(c["privacy_epsilon"].get<double>(), expected, 1e-9 * expected) << c.dump();
    }
  EXPECT_NE(f.status()["clients"]["c0"]["failure"].get<std::string>().find("privacy budget spent"), std::string::npos)
      << f.status().dump();
}

// transport.compression end to end: each codec's uploads travel encoded (their bytes recorded
// beside the float32 size), decode at the aggregator against the round's global, and the run
// completes; error feedback keeps its residual in each worker's state folder; a worker encoding
// with another codec than the run's is refused with both named.
TEST(Compression, EachCodecTrainsARunWithItsBytesAndAWrongCodecIsRefusedByName) {
  struct Case {
    std::string compression;
    double at_most;  // bytes uploaded over the float32 update's
    bool residual;
  };
  for (const Case& c : {Case{"{codec: bf16, errorFeedback: false}", 0.5, false}, Case{"{codec: int8, blockSize: 64}", 0.27, true},
                        Case{"{codec: topk, fraction: 0.05}", 0.1, true}}) {
    SCOPED_TRACE(c.compression);
    Federation f("codec", 2, 3, {{"minFitClients", "2"}, {"minAvailableClients", "2"}, {"tls", "    compression: " + c.compression + "\n"}});
    f.start_aggregator();
    f.start_worker("c0");
    f.start_worker("c1");
    ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
    const auto rounds = f.metrics()["rounds"];
    ASSERT_EQ(rounds.size(), 4u);
    for (int r = 1; r <= 3; ++r)
      for (const auto& p : rounds[r]["clients"]) {
        ASSERT_EQ(p["status"], "accepted") << p.dump();
        const double global_bytes = p["bytes_decoded"].get<double>();
        EXPECT_LE(p["bytes_uploaded"].get<double>(), c.at_most * global_bytes) << p.dump();
        EXPECT_GT(p["update_norm"].get<double>(), 0) << p.dump();
        // The first download is the whole global; later ones the encoded step from the last.
        if (r == 1) {
          EXPECT_GE(p["bytes_downloaded"].get<double>(), global_bytes) << p.dump();
        } else {
          EXPECT_LE(p["bytes_downloaded"].get<double>(), c.at_most * global_bytes) << p.dump();
        }
      }
    EXPECT_TRUE(std::isfinite(rounds[3]["server_eval_loss"].get<double>()));
    for (const char* w : {"c0", "c1"}) {
      EXPECT_EQ(file_exists(f.dir + "/state/" + w + "/error_feedback.safetensors"), c.residual) << w;
      // Each step rebuilt the round's global exactly: the worker trained from it and the
      // aggregator accepted an update based on that digest.
      EXPECT_EQ(count_of(f.workers.at(w)->log(), "event=download_step_applied"), 2u) << f.logs();
    }
    EXPECT_EQ(file_exists(f.out + "/checkpoints/round_0003/download_residual.safetensors"), c.residual);
  }

  Federation f("codec-mismatch", 2, 1, {{"minFitClients", "1"}, {"minAvailableClients", "2"}, {"maxRoundAttempts", "maxRoundAttempts: 1"},
                                        {"tls", "    compression: {codec: int8}\n"}});
  std::string other = read_file(f.spec);
  other.replace(other.find("codec: int8"), 11, "codec: bf16");
  const std::string other_spec = write_spec(make_temp_dir("codec-other"), other);
  f.start_aggregator();
  f.start_worker("c0");
  f.start_worker("c1", other_spec);
  ASSERT_EQ(f.aggregator->wait(180s), 0) << f.logs();
  EXPECT_NE(f.aggregator->log().find("expected an update encoded as 'int8 block_size=4096', got 'bf16'"), std::string::npos) << f.logs();
  const auto round = f.metrics()["rounds"][1]["clients"];
  for (const auto& p : round) {
    if (p["client"] == "c1") {
      EXPECT_NE(p["status"], "accepted") << p.dump();
    }
  }
}
