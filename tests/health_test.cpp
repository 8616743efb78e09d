// Health as Kubernetes reads it, on real processes: the aggregator's gRPC health service (the
// kubelet's grpc probes) on its plaintext health port and on the mutual-TLS federation port, and
// the worker's /healthz (an httpGet probe) when training is stuck; and the probes the operator
// renders, against Kubernetes' strict schemas. Stuck work is made for real: a LeRobot dataset file
// replaced by a FIFO, whose open() blocks forever, as a read from a dead mount would.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/metrics/http_get.h"
#include "core/spec/federation_spec.h"
#include "core/transport/channel.h"
#include "core/transport/health_services.h"
#include "core/util/fs.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "operator/children.h"
#include "support/test_support.h"
#include "zk0/v1/federation.grpc.pb.h"

using namespace zk0;
using namespace zk0::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kReadiness = AggregatorHealthServices::kReadiness;
const std::string kLiveness = AggregatorHealthServices::kLiveness;

std::shared_ptr<grpc::Channel> plaintext(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

// What a probe sees: SERVING, NOT_SERVING, or the call's error code.
std::string check(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 2s);
  const grpc::Status s = Health::NewStub(channel)->Check(&ctx, req, &resp);
  if (!s.ok()) return "error " + std::to_string(s.error_code());
  return HealthCheckResponse::ServingStatus_Name(resp.status());
}
std::string error(grpc::StatusCode code) { return "error " + std::to_string(code); }

// The HTTP status and body a probe gets; 0 when nothing answers.
HttpResponse get(int port, const std::string& path) {
  try {
    return http_get("127.0.0.1", port, path, 1 << 20, 3s);
  } catch (const std::exception&) {
    return {};
  }
}

// A LeRobot dataset from `zk0 dataset synth` (one 64x96 camera, as the tiny SmolVLA below reads).
std::string synth_dataset(const std::string& dir, const std::string& task, int seed) {
  run_command(bin("zk0") + " dataset synth " + dir + " --version v3.0 --episodes 2 --episode-length 20 --cameras 1" +
              " --height 64 --width 96 --seed " + std::to_string(seed) + " --task '" + task + "'");
  return dir;
}

// Replaces every file of `dataset` under `subdir` with the extension `ext` by a FIFO nobody
// writes: whoever opens it waits forever.
void hang_files(const std::string& dataset, const std::string& subdir, const std::string& ext) {
  int hung = 0;
  for (const auto& e : fs::recursive_directory_iterator(dataset + "/" + subdir))
    if (e.path().extension() == ext) {
      fs::remove(e.path());
      ASSERT_EQ(mkfifo(e.path().c_str(), 0600), 0) << e.path();
      ++hung;
    }
  ASSERT_GT(hung, 0) << "no " << ext << " under " << dataset << "/" << subdir;
}

// A run of the tiny SmolVLA: the only policy whose training and evaluation open video files.
std::string smolvla_spec(const std::string& dir, const std::string& clients, const std::string& eval_dataset,
                         const std::string& strategy) {
  return "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: health-test}\nspec:\n"
         "  rounds: 50\n  outputDir: " + dir + "/out\n  clients:\n" + clients +
         "  evaluation: {dataset: {path: " + eval_dataset + "}, batches: 1, batchSize: 2}\n"
         "  training: {localSteps: 1, batchSize: 2}\n"
         "  strategy: " + strategy + "\n" + tiny_smolvla_policy();
}

struct Aggregator {
  int port = free_port(), health_port = free_port();
  std::string metrics_port_file;
  std::unique_ptr<Process> process;

  Aggregator(const std::string& dir, const std::string& spec) : metrics_port_file(dir + "/aggregator.metrics-port") {
    process = std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-aggregator"), "--spec", spec, "--listen", address(), "--health-listen",
                                 "127.0.0.1:" + std::to_string(health_port), "--metrics-listen", "127.0.0.1:0",
                                 "--metrics-port-file", metrics_port_file},
        dir + "/aggregator.log");
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  bool logged(const std::string& text) const { return process->log().find(text) != std::string::npos; }
  // Waits for a log line (or the process's end); false if it did not come.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout = 60s) const {
    return wait_until([&] { return logged(text) || !process->running(); }, timeout) && logged(text);
  }
  int metrics_port() const { return std::stoi(read_file(metrics_port_file)); }
};

}  // namespace

// Under mutual TLS the kubelet cannot call the federation port; the health port answers it in
// plaintext and serves nothing but health. Readiness turns NOT_SERVING when the run is over (here
// it fails by its own rules: no client ever comes), and Watch sees it happen.
TEST(AggregatorHealth, PlaintextHealthPortBesideAMutualTlsFederationPort) {
  const std::string dir = make_temp_dir("health-tls");
  const Certificates certs = generate_certificates(dir);
  const std::string spec = write_spec(dir, small_spec(dir + "/out", 2, 3,
                                                      {{"tls", mutual_tls_block(certs)},
                                                       {"clientExtra", client_tls_extra(certs)},
                                                       {"startTimeoutSeconds", "4"}}));
  Aggregator agg(dir, spec);
  ASSERT_TRUE(agg.wait_for("event=listening")) << agg.process->log();
  const auto health = plaintext(agg.health_port);
  ASSERT_TRUE(wait_until([&] { return check(health, kReadiness) == "SERVING"; }, 10s)) << agg.process->log();
  EXPECT_EQ(check(health, kLiveness), "SERVING");
  EXPECT_EQ(check(health, ""), "SERVING");
  EXPECT_EQ(check(health, "zk0.v1.NoSuchService"), error(grpc::StatusCode::NOT_FOUND));

  // Nothing but health on that port: the federation's methods are not there.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::RegisterRequest req;
    req.set_client_name("c0");
    v1::RegisterReply reply;
    EXPECT_EQ(v1::Federation::NewStub(health)->Register(&ctx, req, &reply).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  // The federation port serves the same health to a client with a certificate of the run's CA,
  // and nothing to a plaintext caller.
  const FederationSpec parsed = load_spec(spec);
  const auto tls = make_channel(agg.address(), parsed.transport, parsed.client("c0").tls);
  EXPECT_EQ(check(tls, kReadiness), "SERVING");
  EXPECT_EQ(check(tls, kLiveness), "SERVING");
  EXPECT_EQ(check(plaintext(agg.port), kReadiness), error(grpc::StatusCode::UNAVAILABLE));
  // The HTTP endpoints say the same, for people and `zk0 run`.
  EXPECT_EQ(get(agg.metrics_port(), "/readyz").status, 200);
  EXPECT_EQ(get(agg.metrics_port(), "/healthz").status, 200);

  HealthCheckRequest req;
  req.set_service(kReadiness);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  auto watch = Health::NewStub(health)->Watch(&ctx, req);
  HealthCheckResponse seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::SERVING);
  ASSERT_TRUE(watch->Read(&seen)) << agg.process->log();
  EXPECT_EQ(seen.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(agg.process->wait(30s), 3) << agg.process->log();  // kExitRunFailed: the start timeout
  EXPECT_TRUE(agg.logged("event=health_changed check=readiness healthy=0 reason=\"the run is over\"")) << agg.process->log();
  fs::remove_all(dir);
}

// While the aggregator loads (here its evaluation dataset hangs on open), the health port already
// answers: alive, not ready, and the federation port is not open yet.
TEST(AggregatorHealth, NotReadyButAliveWhileStarting) {
  const std::string dir = make_temp_dir("health-starting");
  const std::string eval = synth_dataset(dir + "/eval", "held out", 9);
  hang_files(eval, "data", ".parquet");
  std::string yaml = small_spec(dir + "/out", 2, 3);
  const std::string synthetic_eval = "dataset: {synthetic: {task: \"held-out task\", episodes: 4, episodeLength: 40, seed: 99}}";
  yaml.replace(yaml.find(synthetic_eval), synthetic_eval.size(), "dataset: {path: " + eval + "}");
  Aggregator agg(dir, write_spec(dir, yaml));
  ASSERT_TRUE(agg.wait_for("event=health_listening")) << agg.process->log();
  const auto health = plaintext(agg.health_port);
  EXPECT_EQ(check(health, kReadiness), "NOT_SERVING");
  EXPECT_EQ(check(health, kLiveness), "SERVING");
  EXPECT_TRUE(holds_for([&] { return check(health, kReadiness) == "NOT_SERVING" && !agg.logged("event=listening"); }, 2s))
      << agg.process->log();
  EXPECT_TRUE(agg.process->running());
  fs::remove_all(dir);
}

// A round loop that stops coming back to its deadline checks (here the round-0 evaluation reads a
// video that never opens) turns liveness NOT_SERVING after roundTimeoutSeconds, on the gRPC
// probe's port and on /healthz. SIGTERM then takes readiness away, but the wedged process cannot
// stop: what the kubelet's kill after a failed liveness probe is for.
TEST(AggregatorHealth, AWedgedRoundLoopFailsLivenessAfterTheRoundTimeout) {
  const std::string dir = make_temp_dir("health-wedged");
  const std::string eval = synth_dataset(dir + "/eval", "held out", 9);
  hang_files(eval, "videos", ".mp4");
  const std::string clients = "    - {name: a, dataset: {path: " + synth_dataset(dir + "/a", "pick", 1) + "}}\n";
  const std::string strategy = "{minFitClients: 1, minAvailableClients: 1, roundTimeoutSeconds: 2}";
  Aggregator agg(dir, write_spec(dir, smolvla_spec(dir, clients, eval, strategy)));
  ASSERT_TRUE(agg.wait_for("event=listening")) << agg.process->log();
  const auto health = plaintext(agg.health_port);
  ASSERT_TRUE(wait_until([&] { return check(health, kReadiness) == "SERVING"; }, 10s)) << agg.process->log();
  const auto ready_at = Clock::now();
  EXPECT_EQ(check(health, kLiveness), "SERVING");
  ASSERT_TRUE(wait_until([&] { return check(health, kLiveness) == "NOT_SERVING"; }, 20s)) << agg.process->log();
  EXPECT_GE(Clock::now() - ready_at, 1500ms) << "liveness failed before the round timeout";
  const std::string reason = "the round loop made no progress for longer than 2s (spec.strategy.roundTimeoutSeconds)";
  EXPECT_TRUE(agg.logged("event=health_changed check=liveness healthy=0 reason=\"" + reason + "\"")) << agg.process->log();
  const HttpResponse healthz = get(agg.metrics_port(), "/healthz");
  EXPECT_EQ(healthz.status, 503);
  EXPECT_EQ(healthz.body, reason + "\n");

  agg.process->signal(SIGTERM);
  EXPECT_TRUE(wait_until([&] { return check(health, kReadiness) == "NOT_SERVING"; }, 10s)) << agg.process->log();
  EXPECT_EQ(check(health, kLiveness), "NOT_SERVING");
  EXPECT_TRUE(agg.process->running());
  fs::remove_all(dir);
}

// A worker busy without progress for roundTimeoutSeconds answers /healthz 503 with the reason;
// one that is idle (waiting for its next round) or progressing answers 200 throughout.
TEST(WorkerHealth, StuckTrainingFailsHealthzWhileAnIdleWorkerPasses) {
  const std::string dir = make_temp_dir("health-worker");
  const std::string stuck_data = synth_dataset(dir + "/stuck", "pick", 1);
  hang_files(stuck_data, "videos", ".mp4");
  const std::string clients = "    - {name: stuck, dataset: {path: " + stuck_data + "}}\n" +
                              "    - {name: idle, dataset: {path: " + synth_dataset(dir + "/idle", "place", 2) + "}}\n";
  const std::string eval = synth_dataset(dir + "/eval", "held out", 9);
  const int round_timeout = 6;
  const std::string spec = write_spec(dir, smolvla_spec(dir, clients, eval,
                                                        "{minFitClients: 1, minAvailableClients: 2, roundTimeoutSeconds: " +
                                                            std::to_string(round_timeout) + "}"));
  Aggregator agg(dir, spec);
  ASSERT_TRUE(agg.wait_for("event=listening")) << agg.process->log();
  std::map<std::string, std::unique_ptr<Process>> workers;
  for (const char* name : {"stuck", "idle"})
    workers[name] = std::make_unique<Process>(
        std::vector<std::string>{bin("zk0-worker"), "--spec", spec, "--client", name, "--aggregator", agg.address(),
                                 "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", dir + "/" + name + ".metrics-port"},
        dir + "/" + name + ".log");
  const auto logs = [&] {
    return agg.process->log() + "\n--- stuck\n" + workers["stuck"]->log() + "\n--- idle\n" + workers["idle"]->log();
  };
  const auto logged = [&](const char* name, const std::string& text) { return workers[name]->log().find(text) != std::string::npos; };
  const auto healthz = [&](const char* name) { return get(std::stoi(read_file(dir + "/" + name + ".metrics-port")), "/healthz"); };
  ASSERT_TRUE(wait_until([&] { return logged("stuck", "event=round_instructed"); }, 60s)) << logs();
  const auto busy_at = Clock::now();
  ASSERT_TRUE(wait_until([&] { return file_exists(dir + "/stuck.metrics-port") && file_exists(dir + "/idle.metrics-port"); }, 10s));
  EXPECT_EQ(healthz("stuck").status, 200) << "stuck before its bound";
  ASSERT_TRUE(wait_until([&] { return healthz("stuck").status == 503; }, std::chrono::seconds(round_timeout + 20))) << logs();
  EXPECT_GE(Clock::now() - busy_at, std::chrono::milliseconds(round_timeout * 1000 - 500)) << "stuck reported before the bound";
  const std::string reason = "training made no progress for longer than " + std::to_string(round_timeout) +
                             "s (spec.strategy.roundTimeoutSeconds)";
  EXPECT_EQ(healthz("stuck").body, reason + "\n");
  EXPECT_TRUE(wait_until([&] { return logged("stuck", "event=health_changed check=liveness healthy=0"); }, 5s)) << logs();
  // The other worker trains its rounds and waits for the next: healthy all along.
  EXPECT_TRUE(wait_until([&] { return logged("idle", "event=update_uploaded"); }, 30s)) << logs();
  EXPECT_TRUE(holds_for([&] { return healthz("idle").status == 200; }, 2s)) << logs();
  EXPECT_FALSE(logged("idle", "event=health_changed")) << logs();
  fs::remove_all(dir);
}

// The probes the operator renders: gRPC health on the aggregator's plaintext health port (a port
// number: grpc probes take no names), /healthz on each worker's metrics port; the health port is
// not open to other pods; and every object passes Kubernetes' strict schemas.
TEST(RenderedProbes, GrpcHealthForTheAggregatorHttpHealthzForWorkersValidAgainstTheSchemas) {
  const FederationSpec spec = parse_spec(small_spec("/tmp/unused", 2, 1));
  const nlohmann::json run = {{"metadata", {{"name", "test-run"}, {"namespace", "ns"}, {"uid", "u"}}}};
  const op::OperatorSettings settings;
  const nlohmann::json aggregator = op::aggregator_pod(run, spec, settings, 1);
  const nlohmann::json worker = op::worker_pod(run, spec, spec.clients[0], settings, 1);
  const auto& a = aggregator["spec"]["containers"][0];
  const std::string health_listen = "0.0.0.0:" + std::to_string(settings.aggregator_health_port);
  EXPECT_NE(a["args"].dump().find("\"--health-listen\",\"" + health_listen + "\""), std::string::npos) << a["args"];
  EXPECT_NE(a["ports"].dump().find("{\"containerPort\":" + std::to_string(settings.aggregator_health_port) + ",\"name\":\"health\""),
            std::string::npos)
      << a["ports"];
  EXPECT_EQ(a["readinessProbe"]["grpc"], (nlohmann::json{{"port", settings.aggregator_health_port}, {"service", kReadiness}}));
  EXPECT_EQ(a["livenessProbe"]["grpc"], (nlohmann::json{{"port", settings.aggregator_health_port}, {"service", kLiveness}}));
  const auto& w = worker["spec"]["containers"][0];
  EXPECT_EQ(w["livenessProbe"]["httpGet"], (nlohmann::json{{"path", "/healthz"}, {"port", "metrics"}}));
  for (const auto* probe : {&a["readinessProbe"], &a["livenessProbe"], &w["livenessProbe"]}) {
    EXPECT_FALSE(probe->contains("initialDelaySeconds")) << "the processes answer from their first moment";
    EXPECT_GE((*probe)["failureThreshold"].get<int>(), 2) << *probe;
  }
  // Restarts are the operator's: a liveness kill fails the pod, which it replaces.
  EXPECT_EQ(worker["spec"]["restartPolicy"], "Never");
  // Neither the Service nor the NetworkPolicy opens the health port: only the kubelet, from the
  // node, reaches it (NetworkPolicies always admit the pod's own node).
  const nlohmann::json service = op::aggregator_service(run, settings);
  const nlohmann::json policy = op::aggregator_network_policy(run, spec, settings);
  const std::string health_port = std::to_string(settings.aggregator_health_port);
  EXPECT_EQ(service.dump().find(health_port), std::string::npos) << service;
  EXPECT_EQ(policy.dump().find(health_port), std::string::npos) << policy;

  const std::string dir = make_temp_dir("rendered-probes");
  std::ofstream(dir + "/objects.json") << nlohmann::json{{"apiVersion", "v1"}, {"kind", "List"},
                                                         {"items", {aggregator, worker, service, policy}}}.dump();
  int code = 0;
  const std::string report = run_command(std::string(ZK0_SOURCE_DIR) + "/.venv/bin/python " + ZK0_SOURCE_DIR +
                                             "/tests/kube/validate_manifests.py " + dir + "/objects.json", &code);
  EXPECT_EQ(code, 0) << report;
  EXPECT_NE(report.find("checked 4 manifests, 0 problems"), std::string::npos) << report;
  fs::remove_all(dir);
}
