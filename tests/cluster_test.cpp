// zk0 on a real single-node Kubernetes cluster (tests/kube/cluster.sh): the chart installed with
// helm as a user installs it, FederationRuns applied with kubectl, and a kubelet running the
// operator, aggregator and worker pods from the images built here (tests/kube/images.sh). One
// process, one cluster: the cases run in order, each in the chart's namespace, and the last one
// uninstalls the chart.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/util/base64.h"
#include "core/util/exit_codes.h"
#include "core/util/fs.h"
#include "operator/kube/client.h"
#include "support/kube_cluster.h"
#include "support/local_cluster.h"
#include "support/owner_network.h"
#include "support/prometheus.h"
#include "support/test_support.h"

using namespace zk0;
using namespace zk0::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kNamespace = "zk0-system";  // the release namespace, which the operator watches
const std::string kRelease = "zk0";
LocalCluster* cluster = nullptr;
std::string volumes;  // hostPath volumes live here, on the node

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Without the cluster every case would fail on its own; say why once and stop.
    try {
      // The cluster's folder is fixed, so that the leftovers of a run that was killed are taken
      // back by the next one (tests/kube/cluster.sh up tears down what its folder names first).
      volumes = make_temp_dir("cluster-volumes");
      cluster = new LocalCluster("/tmp/zk0-cluster-test");
    } catch (const std::exception& e) {
      std::cerr << "cluster setup failed: " << e.what() << "\n";
      std::exit(1);
    }
  }
  void TearDown() override { delete cluster; }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

std::string ns_path(const std::string& resource) { return "/api/v1/namespaces/" + kNamespace + "/" + resource; }
std::string run_path(const std::string& name) { return "/apis/zk0.io/v1alpha1/namespaces/" + kNamespace + "/federationruns/" + name; }

json run_status(const std::string& name) {
  const json run = cluster->get(run_path(name));
  return run.is_object() ? run.value("status", json::object()) : json::object();
}

json pod(const std::string& name) { return cluster->get(ns_path("pods/" + name)); }

std::string pod_phase(const json& p) { return p.is_object() ? p["status"].value("phase", "") : ""; }

json condition(const json& status, const std::string& type) {
  for (const auto& c : status.value("conditions", json::array()))
    if (c.value("type", "") == type) return c;
  return json::object();
}

// `text` with every `from` replaced by `to`; `from` must occur.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  if (text.find(from) == std::string::npos) throw std::runtime_error("'" + from + "' not in:\n" + text);
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) text.replace(at, from.size(), to);
  return text;
}

int kubectl_apply(const std::string& yaml, std::string* out = nullptr) {
  const std::string file = cluster->dir() + "/apply-" + std::to_string(std::hash<std::string>()(yaml)) + ".yaml";
  std::ofstream(file) << yaml;
  return cluster->kubectl("apply -f " + file, out);
}

// A FederationRun of the flow-matching policy on claims `data-<run>-<client>`, `local_steps` per
// round; `client_extra` is added to each client, `extra` adds lines under spec.
std::string federation_run(const std::string& name, const std::vector<std::string>& clients, int rounds, int local_steps = 60,
                           const std::string& client_extra = "", const std::string& extra = "") {
  std::string text = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: " + name + ", namespace: " + kNamespace +
                     "}\nspec:\n  rounds: " + std::to_string(rounds) + "\n  outputDir: outputs/" + name + "\n  clients:\n";
  for (const auto& c : clients)
    text += "    - {name: " + c + ", dataset: {volumeClaim: {claimName: data-" + name + "-" + c + "}}" + client_extra + "}\n";
  // Contribution scores on, so that their dashboard panel has data and both estimates run in pods.
  text += "  evaluation: {dataset: {volumeClaim: {claimName: data-" + name + "-eval}}, mode: quick, batches: 4, batchSize: 32, seed: 7,"
          " contributionScores: {firstOrder: true, leaveOneOut: true}}\n"
          "  training: {localSteps: " + std::to_string(local_steps) + ", batchSize: 32, seed: 42, optimizer: {lr: 1.0e-3}}\n"
          "  strategy: {type: fedavg, minFitClients: 2, minAvailableClients: " +
          std::to_string(clients.size()) +
          ", startTimeoutSeconds: 300, roundTimeoutSeconds: 300}\n"
          "  policy: {type: flow-matching-mlp, config: {chunkSize: 10, hiddenDim: 128, layers: 2}}\n"
          "  checkpoints: {everyRounds: 1, keepLast: 2}\n"
          "  aggregator: {storage: {size: 1Gi}}\n" +
          extra;
  return text;
}

// The datasets (one task each, AV1 video), the checkpoint volume and the mutual-TLS Secrets of
// a run, as examples/k8s/provision.sh makes them for `make kube-demo`.
void provision(const std::string& run, const std::vector<std::string>& clients) {
  const std::vector<std::string> tasks{"Put the red LEGO in the bin", "turn to the right side", "rub the plush toy with the bottle",
                                       "put the stuffed animal in the mug"};
  std::string out;
  for (size_t i = 0; i <= clients.size(); ++i) {
    const std::string name = i < clients.size() ? clients[i] : "eval";
    const std::string task = i < clients.size() ? tasks[i % tasks.size()] : "Two cubes and two buckets";
    ASSERT_EQ(cluster->provision("dataset " + kNamespace + " data-" + run + "-" + name + " " + volumes + "/" + run + "-" + name +
                                     " --version " + (i % 2 ? "v2.1" : "v3.0") + " --seed " + std::to_string(i + 1) + " --task '" + task +
                                     "' --episodes 12 --episode-length 60 --cameras 1 --height 64 --width 64",
                                 &out),
              0)
        << out;
  }
  ASSERT_EQ(cluster->provision("checkpoints " + kNamespace + " " + run + " " + volumes + "/" + run + "-checkpoints 1Gi", &out), 0) << out;
  std::string names;
  for (const auto& c : clients) names += " " + c;
  ASSERT_EQ(cluster->provision("tls " + kNamespace + " " + run + " " + volumes + "/" + run + "-ca" + names, &out), 0) << out;
}

// The host pid of a pod's main container, through containerd (its id is in the pod's status).
int container_pid(const json& p) {
  const std::string id = p["status"]["containerStatuses"][0].value("containerID", "");
  const std::string bare = id.substr(id.find("://") == std::string::npos ? 0 : id.find("://") + 3);
  int code = 0;
  const std::string out = run_command("ctr --address " + cluster->dir() + "/containerd/containerd.sock -n k8s.io tasks ls | awk '$1 == \"" +
                                          bare + "\" {print $2}'",
                                      &code);
  return code == 0 && !out.empty() ? std::stoi(out) : -1;
}

std::vector<json> events_for(const std::string& object) {
  std::vector<json> found;
  const json list = cluster->get(ns_path("events?fieldSelector=involvedObject.name%3D" + object));
  if (list.is_object())
    for (const auto& e : list["items"]) found.push_back(e);
  return found;
}

bool has_event(const std::string& object, const std::string& reason) {
  for (const auto& e : events_for(object))
    if (e.value("reason", "") == reason) return true;
  return false;
}

// Every component (the operator, the scheduler, the kubelet) records its events after it writes
// the status that the test waited for, so an event is awaited, never read once.
bool event_arrives(const std::string& object, const std::string& reason) {
  return wait_until([&] { return has_event(object, reason); }, 30s);
}

}  // namespace

// helm install of helm/zk0 as a user on a CPU cluster would type it: the CPU images' tag, the
// chart's defaults otherwise (two operator replicas, namespace-scoped RBAC, mutual TLS).
TEST(Cluster, HelmInstallRunsTheOperatorInItsPodOnItsServiceAccount) {
  std::string out;
  ASSERT_EQ(cluster->helm("install " + kRelease + " " + std::string(ZK0_SOURCE_DIR) + "/helm/zk0 --namespace " + kNamespace +
                              " --create-namespace --set image.aggregator.tag=0.1.0-cpu --set image.worker.tag=0.1.0-cpu --wait --timeout 3m",
                          &out),
            0)
      << out << cluster->describe(kNamespace);
  const json deployment = cluster->get("/apis/apps/v1/namespaces/" + kNamespace + "/deployments/zk0");
  ASSERT_TRUE(deployment.is_object()) << out;
  EXPECT_EQ(deployment["status"].value("availableReplicas", 0), 2) << deployment["status"].dump(2);
  // One replica leads (the Lease), and it reached the API server from inside its pod: through the
  // `kubernetes` Service, authenticated by its service-account token.
  json lease;
  ASSERT_TRUE(wait_until([&] {
    lease = cluster->get("/apis/coordination.k8s.io/v1/namespaces/" + kNamespace + "/leases/zk0");
    return lease.is_object() && !lease["spec"].value("holderIdentity", "").empty();
  }, 60s)) << cluster->describe(kNamespace);
  const std::string leader = lease["spec"]["holderIdentity"];
  cluster->kubectl("-n " + kNamespace + " logs " + leader, &out);
  EXPECT_NE(out.find("server=https://10.96.0.1:443"), std::string::npos) << out;
  EXPECT_NE(out.find("event=leader_elected"), std::string::npos) << out;
  // The pod's token is a projected service-account token of the chart's ServiceAccount.
  const json leader_pod = pod(leader);
  EXPECT_EQ(leader_pod["spec"].value("serviceAccountName", ""), "zk0");
  EXPECT_EQ(pod_phase(leader_pod), "Running");
}

namespace {

// Prometheus on the node (tests/kube/build-tools.sh builds it: Debian's has no Kubernetes service
// discovery), discovering pods and endpoints through the API server as the
// chart's PodMonitor (the runs' pods: managed-by zk0-operator, port `metrics`) and ServiceMonitor
// (the operator's metrics Service) select them, with the labels prometheus-operator would give.
class ClusterPrometheus {
 public:
  explicit ClusterPrometheus(const std::string& dir) : port_(free_port()) {
    const std::string sd = "kubernetes_sd_configs: [{role: ROLE, kubeconfig_file: " + cluster->kubeconfig() + ", namespaces: {names: [" +
                           kNamespace + "]}}]";
    const auto with_role = [&](const std::string& role) { return std::string(sd).replace(sd.find("ROLE"), 4, role); };
    std::ofstream(dir + "/prometheus.yml")
        << "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
        << "  - job_name: podMonitor/" << kNamespace << "/zk0-runs/0\n    " << with_role("pod") << "\n    relabel_configs:\n"
        << "      - {source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_managed_by], regex: zk0-operator, action: keep}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_phase], regex: Failed|Succeeded, action: drop}\n"
        << "      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_container_name], target_label: container}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_label_zk0_io_run], target_label: zk0_io_run}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_label_zk0_io_client], target_label: zk0_io_client}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component], target_label: job}\n"
        << "  - job_name: serviceMonitor/" << kNamespace << "/zk0/0\n    " << with_role("endpoints") << "\n    relabel_configs:\n"
        << "      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name], regex: zk0, action: keep}\n"
        << "      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_component], regex: operator, action: keep}\n"
        << "      - {source_labels: [__meta_kubernetes_endpoint_port_name], regex: metrics, action: keep}\n"
        << "      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}\n"
        << "      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n"
        << "      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name], target_label: job}\n";
    process_ = std::make_unique<Process>(
        std::vector<std::string>{cluster->tool("prometheus"), "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/tsdb",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
        dir + "/prometheus.log");
  }
  int port() const { return port_; }
  std::string log() const { return process_->log(); }
  bool holds(const std::string& promql) const {
    const json r = prometheus_query(port_, promql);
    return r.is_object() && r.contains("data") && !r["data"]["result"].empty();
  }

 private:
  int port_;
  std::unique_ptr<Process> process_;
};

// What `kubectl get fedrun NAME` prints under COLUMN.
std::string printed_column(const std::string& run, const std::string& column) {
  std::string out;
  cluster->kubectl("-n " + kNamespace + " get fedrun " + run, &out);
  return table_column(out, column);
}

}  // namespace

// Three clients on their own claims, mutual TLS from Secrets, the workers finding the aggregator
// by its Service name. While it trains: Prometheus scrapes every pod in its container; a worker
// pod is deleted mid-round; another worker hangs and the kubelet's liveness probe kills it; the
// aggregator pod is deleted and its successor resumes from the checkpoint on the claim; the run
// is suspended and resumed. It still completes every round, once. Updates travel int8-encoded
// both ways (transport.compression), so the transport dashboard's compression panels have data.
TEST(Cluster, AFederationRunTrainsInPodsThroughWorkerAndAggregatorFaults) {
  const std::string run = "pods";
  const std::vector<std::string> clients{"pick", "turn", "rub"};
  provision(run, clients);
  ASSERT_FALSE(HasFatalFailure());
  const std::string outputs = volumes + "/" + run + "-checkpoints";
  const std::string prometheus_dir = make_temp_dir("cluster-prometheus");
  ClusterPrometheus prometheus(prometheus_dir);
  // Rounds of ~10 s here: long enough for each fault to land while the run goes on.
  const int rounds = 12, local_steps = 400;
  ASSERT_EQ(kubectl_apply(federation_run(run, clients, rounds, local_steps, "", "  transport: {compression: {codec: int8}}\n")), 0);
  const auto round_reached = [&](int r) {
    return wait_until([&] { return run_status(run).value("currentRound", 0) >= r; }, 300s);
  };
  ASSERT_TRUE(round_reached(2)) << cluster->describe(kNamespace);
  for (const auto& c : clients) EXPECT_EQ(pod_phase(pod(run + "-worker-" + c)), "Running");

  // Every dashboard query returns data from the pods' own endpoints (the DCGM panels need a GPU).
  ASSERT_TRUE(wait_until([&] {
    return prometheus.holds("count(up{job=\"worker\"} == 1) == 3 and on() count(up{job=\"aggregator\"} == 1) == 1 and on() "
                            "count(up{job=\"zk0\"} == 1) == 2 and on() min(count_over_time(up[1m])) >= 4");
  }, 120s)) << prometheus_query(prometheus.port(), "up").dump(1) << prometheus.log();
  // Some panels have data only once the run has done something (a checkpoint's age): polled.
  std::vector<std::string> empty;
  int with_data = 0;
  wait_until(
      [&] {
        empty.clear();
        with_data = 0;
        for (const auto& q : dashboard_queries(run)) {
          const json r = prometheus_query(prometheus.port(), q.expr);
          if (!r.is_object() || r.value("status", "") != "success") {
            empty.push_back(q.expr + " -> " + (r.is_object() ? r.dump() : "no answer"));
            continue;
          }
          const bool has_data = !r["data"]["result"].empty();
          with_data += has_data;
          if (!has_data && !needs_gpu(q)) empty.push_back(q.dashboard + " / " + q.panel + ": " + q.expr);
        }
        return empty.empty();
      },
      90s);
  EXPECT_TRUE(empty.empty()) << "queries without data:\n" << [&] { std::string s; for (auto& e : empty) s += e + "\n"; return s; }();
  EXPECT_GT(with_data, 40);

  // A worker pod deleted mid-round: the operator creates the next attempt, which rejoins.
  const json turn = pod(run + "-worker-turn");
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete pod " + run + "-worker-turn --wait=false"), 0);
  ASSERT_TRUE(wait_until([&] {
    const json p = pod(run + "-worker-turn");
    return p.is_object() && p["metadata"]["uid"] != turn["metadata"]["uid"] && pod_phase(p) == "Running";
  }, 120s)) << cluster->describe(kNamespace);
  ASSERT_TRUE(wait_until([&] {
    for (const auto& c : run_status(run).value("clients", json::array()))
      if (c.value("name", "") == "turn") return c.value("attempts", 0) == 2 && c.value("failures", 0) == 0;
    return false;
  }, 60s)) << run_status(run).dump(2);

  // A worker that hangs: its liveness probe fails, the kubelet kills the container, the operator
  // counts a failure and starts the next attempt.
  const json rub = pod(run + "-worker-rub");
  const int rub_pid = container_pid(rub);
  ASSERT_GT(rub_pid, 0) << rub.dump(2);
  ASSERT_EQ(::kill(rub_pid, SIGSTOP), 0);
  ASSERT_TRUE(wait_until([&] { return has_event(rub["metadata"]["name"], "Unhealthy") && has_event(rub["metadata"]["name"], "Killing"); }, 120s))
      << cluster->describe(kNamespace);
  ASSERT_TRUE(wait_until([&] {
    for (const auto& c : run_status(run).value("clients", json::array()))
      if (c.value("name", "") == "rub") return c.value("failures", 0) == 1 && c.value("attempts", 0) == 2 && c.value("podPhase", "") == "Running";
    return false;
  }, 180s)) << run_status(run).dump(2) << cluster->describe(kNamespace);

  // The aggregator pod deleted after a checkpoint: its successor resumes after the last round
  // checkpointed on the claim.
  const int before = run_status(run).value("currentRound", 0);
  ASSERT_TRUE(round_reached(before + 1)) << cluster->describe(kNamespace);
  const std::string latest = read_file(outputs + "/checkpoints/latest");
  const int checkpointed = std::stoi(latest.substr(latest.find('_') + 1));
  const json aggregator = pod(run + "-aggregator");
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete pod " + run + "-aggregator --wait=false"), 0);
  std::string log;
  ASSERT_TRUE(wait_until([&] {
    const json p = pod(run + "-aggregator");
    if (!p.is_object() || p["metadata"]["uid"] == aggregator["metadata"]["uid"] || pod_phase(p) != "Running") return false;
    cluster->kubectl("-n " + kNamespace + " logs " + run + "-aggregator", &log);
    return log.find("event=run_resumed") != std::string::npos;
  }, 120s)) << cluster->describe(kNamespace);
  const size_t at = log.find("next_round=", log.find("event=run_resumed"));
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_GE(std::stoi(log.substr(at + 11)), checkpointed + 1) << log;

  // Suspended: the pods go, the claim and its checkpoints stay; resumed: the run goes on.
  ASSERT_TRUE(round_reached(checkpointed + 2)) << cluster->describe(kNamespace);
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " patch fedrun " + run + " --type merge -p '{\"spec\":{\"runPolicy\":{\"suspend\":true}}}'"), 0);
  ASSERT_TRUE(wait_until([&] {
    const json pods = cluster->get(ns_path("pods?labelSelector=zk0.io%2Frun%3D" + run));
    return pods.is_object() && pods["items"].empty() && condition(run_status(run), "Suspended").value("status", "") == "True";
  }, 120s)) << cluster->describe(kNamespace);
  EXPECT_TRUE(cluster->get(ns_path("persistentvolumeclaims/" + run + "-checkpoints")).is_object());
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " patch fedrun " + run + " --type merge -p '{\"spec\":{\"runPolicy\":{\"suspend\":false}}}'"), 0);

  ASSERT_TRUE(wait_until([&] { return run_status(run).value("phase", "") == "Succeeded"; }, 600s)) << cluster->describe(kNamespace);

  // What the run wrote on its claim, what its status says and what kubectl prints agree.
  const json st = run_status(run);
  const json history = read_json(outputs + "/federated_metrics.json")["rounds"];
  ASSERT_EQ(history.size(), static_cast<size_t>(rounds + 1)) << history.dump(2);
  for (int r = 0; r <= rounds; ++r) EXPECT_EQ(history[r].value("round", -1), r) << "every round once, in order";
  const double final_loss = history[rounds]["server_eval_loss"].get<double>();
  EXPECT_EQ(st.value("currentRound", 0), rounds);
  EXPECT_DOUBLE_EQ(st.value("serverEvalLoss", 0.0), final_loss);
  EXPECT_LT(final_loss, history[0]["server_eval_loss"].get<double>());
  EXPECT_EQ(printed_column(run, "PHASE"), "Succeeded");
  EXPECT_EQ(printed_column(run, "ROUND"), std::to_string(rounds));
  EXPECT_NEAR(std::stod(printed_column(run, "SERVER LOSS")), final_loss, 1e-3 * final_loss);

  // The final checkpoint is a pretrained folder: a local run starting from it evaluates, before
  // any training, to the loss the cluster's aggregator reported for its last round.
  const std::string local = make_temp_dir("cluster-pretrained");
  std::string spec = federation_run(run, {"pick", "turn"}, 1, local_steps);
  for (const std::string c : {"pick", "turn", "eval"})
    spec = replaced(spec, "{volumeClaim: {claimName: data-" + run + "-" + c + "}}", "{path: " + volumes + "/" + run + "-" + c + "}");
  char checkpoint[16];
  std::snprintf(checkpoint, sizeof checkpoint, "round_%04d", rounds);
  spec = replaced(spec, "outputDir: outputs/" + run, "outputDir: " + local + "/out");
  spec = replaced(spec, "layers: 2}}", "layers: 2}, pretrained: " + outputs + "/checkpoints/" + checkpoint + "}");
  spec = replaced(spec, "namespace: " + kNamespace, "namespace: default");
  std::string local_out;
  int code = 0;
  local_out = run_command(bin("zk0") + " run " + write_spec(local, spec), &code);
  ASSERT_EQ(code, 0) << local_out;
  const json local_history = read_json(local + "/out/federated_metrics.json")["rounds"];
  EXPECT_NEAR(local_history[0]["server_eval_loss"].get<double>(), final_loss, 1e-6 * final_loss);
}

// Robot owners join a run on the cluster from outside it: the operator issues their tokens into
// a Secret and exposes the aggregator on a NodePort; each owner gets a certificate signed in the
// aggregator pod by the run's CA and trains beside the in-cluster worker, every round with all.
//   owner-b: `zk0 join` in its own network namespace, whose only way out is a route to the node's
//     address: it reaches the run through the NodePort and nothing else of the cluster.
//   owner-c: a FederationMembership in namespace owner-site, reconciled by a second operator
//     instance watching only it; its worker pod runs under the real kubelet.
//   owner-d: a FederationMembership on a second API server (the owner's own cluster, with its own
//     operator instance); it has no kubelet, so the test plays one, running the pod's command as a
//     process with the pod's mounts mapped to folders.
// The run's status says who joined and when it last heard from them; each membership's, what its
// worker delivered.
TEST(Cluster, RobotOwnersJoinARunOnTheClusterFromTheirMachinesAndTheirOwnClusters) {
  const std::string run = "remote", site = "owner-site";
  provision(run, {"pick"});
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  const std::string ca = volumes + "/" + run + "-ca";
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " create secret tls remote-join-ca --cert " + ca + "/ca.crt --key " + ca + "/ca.key", &out), 0)
      << out;
  const int rounds = 3;
  std::string spec = federation_run(run, {"pick"}, rounds, 60, "",
                                    "  transport:\n    tls: {mutual: true}\n    join: {caSecret: remote-join-ca}\n    expose: {type: NodePort}\n");
  spec = replaced(spec, "  evaluation:",
                  "    - {name: owner-b, remote: true}\n    - {name: owner-c, remote: true}\n    - {name: owner-d, remote: true}\n  evaluation:");
  spec = replaced(spec, "minFitClients: 2, minAvailableClients: 1", "minFitClients: 4, minAvailableClients: 4");
  ASSERT_EQ(kubectl_apply(spec, &out), 0) << out << spec;

  // The owners' datasets: on their machines (b, d) or their cluster's claim (c); never the run's.
  const std::string home = make_temp_dir("cluster-owners");
  for (const std::string owner : {"owner-b", "owner-d"}) {
    int code = 0;
    out = run_command(bin("zk0") + " dataset synth " + home + "/" + owner + "-data --version v2.1 --seed " + std::to_string(owner[6]) +
                          " --task 'stack the cups' --episodes 12 --episode-length 60 --cameras 1 --height 64 --width 64 2>&1",
                      &code);
    ASSERT_EQ(code, 0) << out;
  }
  ASSERT_EQ(cluster->kubectl("create namespace " + site, &out), 0) << out;
  ASSERT_EQ(cluster->provision("dataset " + site + " data-owner-c " + volumes + "/owner-c-data --version v3.0 --seed 12 --task 'wipe the table' "
                                   "--episodes 12 --episode-length 60 --cameras 1 --height 64 --width 64",
                               &out),
            0)
      << out;
  ASSERT_EQ(cluster->provision("state " + site + " owner-c " + volumes + "/owner-c-state", &out), 0) << out;

  // Where to join and with what: the run's status and the tokens Secret, as the run's owner reads them.
  std::string endpoint;
  ASSERT_TRUE(wait_until([&] { return !(endpoint = run_status(run).value("joinEndpoint", "")).empty(); }, 120s))
      << run_status(run).dump(2) << cluster->describe(kNamespace);
  const json service = cluster->get(ns_path("services/remote-aggregator-remote"));
  ASSERT_TRUE(service.is_object());
  const std::string node_ip = "10.201.0.1";
  EXPECT_EQ(endpoint, node_ip + ":" + std::to_string(service["spec"]["ports"][0]["nodePort"].get<int>())) << service.dump(2);
  EXPECT_EQ(run_status(run).value("joinTokensSecret", ""), "remote-join-tokens");
  const json tokens = cluster->get(ns_path("secrets/remote-join-tokens"));
  ASSERT_TRUE(tokens.is_object() && tokens["data"].contains("owner-b") && tokens["data"].contains("owner-c") && tokens["data"].contains("owner-d"))
      << tokens.dump();
  const auto token_of = [&](const std::string& owner) { return base64_decode(tokens["data"][owner].get<std::string>(), Base64::kStandard); };
  // kube-proxy has programmed the node port and the aggregator pod is behind it.
  const std::string port = endpoint.substr(endpoint.find(':') + 1);
  ASSERT_TRUE(wait_until([&] {
    int rc = 0;
    run_command("timeout 2 bash -c '</dev/tcp/" + node_ip + "/" + port + "' 2>/dev/null", &rc);
    return rc == 0;
  }, 120s)) << cluster->describe(kNamespace);

  // owner-b: its own network, routed to the node's address only. The aggregator's Service
  // address is not reachable from there (and trying spends no token).
  const OwnerNetwork owner_b_network({node_ip});
  const auto join_b = [&](const std::string& at, const std::string& log) {
    return std::make_unique<Process>(owner_b_network.inside({bin("zk0"), "join", "--endpoint", at, "--token", token_of("owner-b"), "--dataset",
                                                             home + "/owner-b-data", "--state-dir", home + "/owner-b", "--metrics-listen",
                                                             "127.0.0.1:0"}),
                                     log);
  };
  const json cluster_service = cluster->get(ns_path("services/remote-aggregator"));
  auto lost = join_b(cluster_service["spec"].value("clusterIP", "") + ":50051", home + "/owner-b-lost.log");
  EXPECT_EQ(lost->wait(60s), kExitError) << lost->log();
  EXPECT_NE(lost->log().find("does not answer"), std::string::npos) << lost->log();
  auto owner_b = join_b(endpoint, home + "/owner-b.log");

  // owner-c: a namespace of this cluster as its own, with its own operator instance.
  const json deployment = cluster->get("/apis/apps/v1/namespaces/" + kNamespace + "/deployments/zk0");
  std::string worker_image;
  for (const auto& arg : deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    if (arg.get<std::string>().rfind("--worker-image=", 0) == 0) worker_image = arg;
  ASSERT_FALSE(worker_image.empty()) << deployment.dump(2);
  const auto membership_yaml = [&](const std::string& owner) {
    return "apiVersion: zk0.io/v1alpha1\nkind: FederationMembership\nmetadata: {name: " + owner + ", namespace: " + site +
           "}\nspec:\n  endpoint: " + endpoint + "\n  tokenSecret: {name: " + owner + "-token}\n"
           "  dataset: {volumeClaim: {claimName: data-" + owner + "}}\n";
  };
  Process operator_c({bin("zk0-operator"), "--kubeconfig", cluster->kubeconfig(), "--watch-namespace", site, "--leader-election-namespace", site,
                      "--identity", "owner-c-operator", "--metrics-listen", "127.0.0.1:0", worker_image},
                     home + "/owner-c-operator.log");
  ASSERT_EQ(cluster->kubectl("-n " + site + " create secret generic owner-c-token --from-literal=token=" + token_of("owner-c"), &out), 0) << out;
  ASSERT_EQ(kubectl_apply(membership_yaml("owner-c"), &out), 0) << out;

  // owner-d: a second API server, its own operator instance, and this test as its kubelet.
  KubeCluster owner_d_cluster("owner-d", {std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationruns.yaml",
                                          std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationmemberships.yaml"});
  kube::KubeClient owner_d_api(kube::KubeConfig::from_kubeconfig(owner_d_cluster.admin_kubeconfig()));
  const int owner_d_status_port = free_port();
  Process operator_d({bin("zk0-operator"), "--kubeconfig", owner_d_cluster.admin_kubeconfig(), "--watch-namespace", site,
                      "--leader-election-namespace", site, "--identity", "owner-d-operator", "--metrics-listen", "127.0.0.1:0",
                      "--worker-metrics-port", std::to_string(owner_d_status_port), worker_image},
                     home + "/owner-d-operator.log");
  ASSERT_EQ(owner_d_cluster.kubectl("create namespace " + site, &out), 0) << out;
  ASSERT_EQ(owner_d_cluster.kubectl("-n " + site + " create secret generic owner-d-token --from-literal=token=" + token_of("owner-d"), &out), 0)
      << out;
  {
    const std::string file = home + "/owner-d-claim.yaml";
    std::ofstream(file) << "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data-owner-d, namespace: " + site +
                               "}\nspec: {accessModes: [ReadOnlyMany], resources: {requests: {storage: 1Gi}}}\n";
    ASSERT_EQ(owner_d_cluster.kubectl("apply -f " + file, &out), 0) << out;
    std::ofstream(home + "/owner-d-membership.yaml") << membership_yaml("owner-d");
    ASSERT_EQ(owner_d_cluster.kubectl("apply -f " + home + "/owner-d-membership.yaml", &out), 0) << out;
  }
  const std::string pods_d = "/api/v1/namespaces/" + site + "/pods/";
  json pod_d;
  ASSERT_TRUE(wait_until([&] {
    try {
      pod_d = owner_d_api.get(pods_d + "owner-d-worker");
      return true;
    } catch (const kube::ApiError&) {
      return false;
    }
  }, 60s)) << operator_d.log();
  // The pod's command with its mounts as folders: the token's Secret, the dataset's claim, the
  // state claim, and its termination log.
  std::vector<std::string> argv{bin("zk0-worker")};
  const std::map<std::string, std::string> mounted{{"/etc/zk0/join-token/token", home + "/owner-d.token"},
                                                   {"/data/dataset", home + "/owner-d-data"},
                                                   {"/var/lib/zk0/state", home + "/owner-d-state"},
                                                   {"0.0.0.0:" + std::to_string(owner_d_status_port), "127.0.0.1:" + std::to_string(owner_d_status_port)},
                                                   {"/dev/termination-log", home + "/owner-d.termination"}};
  for (const auto& arg : pod_d["spec"]["containers"][0]["args"]) {
    const std::string a = arg;
    argv.push_back(mounted.count(a) ? mounted.at(a) : a);
  }
  EXPECT_EQ(argv.size(), 16u) << pod_d["spec"]["containers"][0]["args"].dump();
  std::ofstream(home + "/owner-d.token") << token_of("owner-d") << "\n";
  Process worker_d(argv, home + "/owner-d-worker.log");
  const auto set_pod_d = [&](const json& status) {
    owner_d_api.patch(pods_d + "owner-d-worker/status", {{"status", status}}, kube::PatchType::Merge);
  };
  set_pod_d({{"phase", "Running"}, {"podIP", "127.0.0.1"}, {"podIPs", json::array({{{"ip", "127.0.0.1"}}})}});
  const auto membership = [&](bool second_cluster, const std::string& owner) {
    const std::string path = "/apis/zk0.io/v1alpha1/namespaces/" + site + "/federationmemberships/" + owner;
    json m;
    if (second_cluster) {
      try {
        m = owner_d_api.get(path);
      } catch (const kube::ApiError&) {
      }
    } else {
      m = cluster->get(path);
    }
    return m.is_object() ? m.value("status", json::object()) : json::object();
  };

  ASSERT_TRUE(wait_until([&] {
    int joined = 0;
    for (const auto& c : run_status(run).value("clients", json::array())) joined += c.value("joined", false);
    return joined == 3;
  }, 180s)) << run_status(run).dump(2) << membership(false, "owner-c").dump(2) << owner_b->log() << worker_d.log() << operator_c.log()
            << cluster->describe(site) << cluster->describe(kNamespace);
  ASSERT_TRUE(wait_until([&] { return run_status(run).value("phase", "") == "Succeeded"; }, 400s))
      << run_status(run).dump(2) << owner_b->log() << worker_d.log() << cluster->describe(site) << cluster->describe(kNamespace);
  EXPECT_EQ(owner_b->wait(60s), 0) << owner_b->log();
  EXPECT_NE(owner_b->log().find("joined run remote as owner-b"), std::string::npos) << owner_b->log();
  ASSERT_EQ(worker_d.wait(60s), 0) << worker_d.log();
  set_pod_d({{"phase", "Succeeded"},
             {"containerStatuses",
              json::array({{{"name", "worker"}, {"image", "zk0/worker"}, {"imageID", ""}, {"ready", false}, {"restartCount", 0},
                            {"state", {{"terminated", {{"exitCode", 0}, {"reason", "Completed"}, {"message", read_file(home + "/owner-d.termination")},
                                                       {"startedAt", "2026-01-01T00:00:00Z"}, {"finishedAt", "2026-01-01T00:01:00Z"}}}}}}})}});
  // Each membership saw its worker finish with the run, and what it delivered.
  for (const auto& [second_cluster, owner] : {std::pair<bool, std::string>{false, "owner-c"}, {true, "owner-d"}}) {
    ASSERT_TRUE(wait_until([&] { return membership(second_cluster, owner).value("phase", "") == "Succeeded"; }, 120s))
        << owner << ": " << membership(second_cluster, owner).dump(2) << operator_c.log() << operator_d.log() << cluster->describe(site);
    // Rounds of a few seconds may pass between two looks at a running worker's /status: what it
    // delivered is certain once its termination message is in.
    const json m = membership(second_cluster, owner);
    EXPECT_EQ(m.value("run", ""), run);
    EXPECT_EQ(m.value("client", ""), owner);
    EXPECT_EQ(m.value("updatesUploaded", 0), rounds) << owner << ": " << m.dump(2);
    EXPECT_EQ(m.value("round", 0), rounds) << owner << ": " << m.dump(2);
    EXPECT_GT(m.value("lastLoss", 0.0), 0.0) << owner << ": " << m.dump(2);
  }
  std::string pod_log;
  cluster->kubectl("-n " + site + " logs owner-c-worker", &pod_log);
  EXPECT_NE(pod_log.find("joined run remote as owner-c"), std::string::npos) << pod_log;

  // Every round aggregated all four updates; the status keeps who joined and when it was last seen.
  const json history = read_json(volumes + "/" + run + "-checkpoints/federated_metrics.json")["rounds"];
  ASSERT_EQ(history.size(), static_cast<size_t>(rounds + 1)) << history.dump(2);
  for (int r = 1; r <= rounds; ++r) {
    std::set<std::string> accepted;
    for (const auto& c : history[r]["clients"])
      if (c.value("status", "") == "accepted") accepted.insert(c.value("client", ""));
    EXPECT_EQ(accepted, (std::set<std::string>{"pick", "owner-b", "owner-c", "owner-d"})) << "round " << r << ": " << history[r].dump(2);
  }
  const json st = run_status(run);
  for (size_t i = 1; i <= 3; ++i) {
    EXPECT_EQ(st["clients"][i].value("state", ""), "Joined") << st.dump(2);
    EXPECT_FALSE(st["clients"][i].value("lastSeen", "").empty()) << st.dump(2);
  }
  EXPECT_TRUE(pod_phase(pod(run + "-worker-owner-b")).empty()) << "a remote client has no pod in the run's cluster";
  ASSERT_EQ(cluster->kubectl("delete namespace " + site + " --wait=false", &out), 0) << out;
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete fedrun " + run + " --wait=true --timeout=120s", &out), 0) << out;
}

// The node advertises GPUs as NVIDIA's device plugin would (nvidia.com/gpu in its status), carries
// the taint GPU nodes carry and a label to select it by: worker pods' GPU requests, tolerations
// and node selectors go through the real scheduler. Two workers asking for one GPU each are bound
// to the node; they find no CUDA there and fail naming the field, and are not retried. The third
// asks for more GPUs than the node has: it stays Pending, and the run says why.
TEST(Cluster, GpuRequestsGoThroughTheSchedulerAndWhatDoesNotFitIsAConditionNotACrashLoop) {
  const std::string run = "gpu";
  const std::vector<std::string> clients{"a", "b", "c"};
  provision(run, clients);
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  ASSERT_EQ(cluster->kubectl("patch node zk0-node --subresource=status --type=json -p "
                             "'[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"2\"}]'",
                             &out),
            0)
      << out;
  ASSERT_TRUE(wait_until([&] {
    const json node = cluster->get("/api/v1/nodes/zk0-node");
    return node["status"]["allocatable"].value("nvidia.com/gpu", "") == "2";
  }, 60s)) << cluster->get("/api/v1/nodes/zk0-node")["status"].dump(2);
  ASSERT_EQ(cluster->kubectl("label node zk0-node zk0.io/accelerator=nvidia-test"), 0);
  ASSERT_EQ(cluster->kubectl("taint node zk0-node nvidia.com/gpu=present:NoSchedule"), 0);
  const std::string toleration = "tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]";
  std::string spec = federation_run(run, clients, 2, 60, ", resources: {gpu: 1}, pod: {nodeSelector: {zk0.io/accelerator: nvidia-test}, " + toleration + "}",
                                    "  aggregator: {storage: {size: 1Gi}, pod: {" + toleration + "}}\n");
  spec.replace(spec.rfind("gpu: 1"), 6, "gpu: 3");  // the last client's
  spec = replaced(spec, "minFitClients: 2", "minFitClients: 1");     // the run outlives a and b
  spec = replaced(spec, "  aggregator: {storage: {size: 1Gi}}\n", "");  // the tolerating one replaces it
  ASSERT_EQ(kubectl_apply(spec, &out), 0) << out << spec;
  json pods_ready;
  ASSERT_TRUE(wait_until([&] {
    pods_ready = condition(run_status(run), "PodsReady");
    return pods_ready.value("reason", "") == "Unschedulable";
  }, 120s)) << run_status(run).dump(2) << cluster->describe(kNamespace);
  EXPECT_EQ(pods_ready.value("status", ""), "False");
  EXPECT_NE(pods_ready.value("message", "").find("pod gpu-worker-c: "), std::string::npos) << pods_ready.dump();
  EXPECT_NE(pods_ready.value("message", "").find("Insufficient nvidia.com/gpu"), std::string::npos) << pods_ready.dump();
  EXPECT_TRUE(event_arrives("gpu-worker-c", "FailedScheduling"));
  // a and b were bound to the node, found no GPU and were excluded without a retry.
  ASSERT_TRUE(wait_until([&] {
    int excluded = 0;
    for (const auto& c : run_status(run).value("clients", json::array()))
      if (c.value("state", "") == "Excluded" && c.value("reason", "") == "InvalidInput") ++excluded;
    return excluded == 2;
  }, 120s)) << run_status(run).dump(2) << cluster->describe(kNamespace);
  for (const std::string c : {"a", "b"}) {
    EXPECT_TRUE(event_arrives("gpu-worker-" + c, "Scheduled")) << c;
    std::string log;
    cluster->kubectl("-n " + kNamespace + " logs gpu-worker-" + c, &log);
    EXPECT_NE(log.find("resources.gpu"), std::string::npos) << log;
  }
  for (const auto& c : run_status(run).value("clients", json::array())) EXPECT_EQ(c.value("attempts", 0), 1) << c.dump();
  // c waits, Pending, as long as the node lacks the GPUs, without a crash loop.
  EXPECT_TRUE(holds_for([&] {
    const json p = pod("gpu-worker-c");
    return pod_phase(p) == "Pending" && p["spec"].value("nodeName", "").empty();
  }, 5s));
  EXPECT_EQ(condition(run_status(run), "PodsReady").value("reason", ""), "Unschedulable");

  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete fedrun " + run + " --wait=true --timeout=120s"), 0);
  cluster->kubectl("taint node zk0-node nvidia.com/gpu-");
  cluster->kubectl("label node zk0-node zk0.io/accelerator-");
  cluster->kubectl("patch node zk0-node --subresource=status --type=json -p "
                   "'[{\"op\":\"remove\",\"path\":\"/status/capacity/nvidia.com~1gpu\"}]'");
}

// A claim that does not exist: the run waits with a condition and an event naming the claim and
// the field that names it, and creates no pod that would hang or crash. Once the claim exists,
// the run starts without being touched.
TEST(Cluster, AMissingClaimOrSecretKeyIsAConditionNamingItAndTheRunStartsOnceFixed) {
  const std::string run = "noclaim";
  provision(run, {"a"});
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  const std::string ca = volumes + "/" + run + "-ca";
  ASSERT_EQ(cluster->provision("tls " + kNamespace + " " + run + " " + ca + " a b", &out), 0) << out;
  // Client b's Secret as a hand-made one often is: no private key. Its pod would hang in
  // ContainerCreating; the run says which Secret lacks which key instead, and makes no pod.
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete secret " + run + "-b-tls"), 0);
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " create secret generic " + run + "-b-tls --from-file=ca.crt=" + ca +
                             "/ca.crt --from-file=tls.crt=" + ca + "/" + run + "-b.crt", &out), 0) << out;
  ASSERT_EQ(kubectl_apply(federation_run(run, {"a", "b"}, 1)), 0);
  json ready;
  ASSERT_TRUE(wait_until([&] {
    ready = condition(run_status(run), "Ready");
    return ready.value("reason", "") == "SecretInvalid";
  }, 60s)) << run_status(run).dump(2);
  EXPECT_NE(ready.value("message", "").find(run + "-b-tls lacks key tls.key"), std::string::npos) << ready.dump();
  EXPECT_TRUE(event_arrives(run, "SecretInvalid"));
  EXPECT_TRUE(cluster->get(ns_path("pods?labelSelector=zk0.io%2Frun%3D" + run))["items"].empty());
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete secret " + run + "-b-tls"), 0);  // a Secret's type is immutable
  ASSERT_EQ(cluster->provision("tls " + kNamespace + " " + run + " " + ca + " a b", &out), 0) << out;
  ASSERT_TRUE(wait_until([&] {
    ready = condition(run_status(run), "Ready");
    return ready.value("reason", "") == "ClaimMissing";
  }, 60s)) << run_status(run).dump(2);
  EXPECT_NE(ready.value("message", "").find("data-noclaim-b"), std::string::npos) << ready.dump();
  EXPECT_NE(ready.value("message", "").find("spec.clients[1].dataset.volumeClaim"), std::string::npos) << ready.dump();
  EXPECT_TRUE(event_arrives(run, "ClaimMissing"));
  EXPECT_TRUE(holds_for([&] {
    const json pods = cluster->get(ns_path("pods?labelSelector=zk0.io%2Frun%3D" + run));
    return pods.is_object() && pods["items"].empty();
  }, 5s));
  ASSERT_EQ(cluster->provision("dataset " + kNamespace + " data-noclaim-b " + volumes + "/noclaim-b --version v3.0 --seed 9 --task 'wave' "
                               "--episodes 12 --episode-length 60 --cameras 1 --height 64 --width 64", &out), 0) << out;
  ASSERT_TRUE(wait_until([&] { return pod(run + "-worker-b").is_object(); }, 60s)) << run_status(run).dump(2);
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete fedrun " + run + " --wait=true --timeout=120s"), 0);
}

// Deleting a run takes every child with it (owner references and the garbage collector); the
// claim's volume stays on the node (Retain), as a user's data should.
TEST(Cluster, DeletingARunDeletesEveryChild) {
  const std::string selector = "?labelSelector=zk0.io%2Frun%3Dpods";
  ASSERT_TRUE(cluster->get(run_path("pods")).is_object()) << "the federation case left its run for this one";
  ASSERT_EQ(cluster->kubectl("-n " + kNamespace + " delete fedrun pods --wait=true --timeout=120s"), 0);
  ASSERT_TRUE(wait_until([&] {
    for (const std::string& kind : {"pods", "services", "configmaps", "persistentvolumeclaims", "secrets"}) {
      const json list = cluster->get(ns_path(kind + selector));
      if (!list.is_object() || !list["items"].empty()) return false;
    }
    const json policies = cluster->get("/apis/networking.k8s.io/v1/namespaces/" + kNamespace + "/networkpolicies" + selector);
    return policies.is_object() && policies["items"].empty();
  }, 120s)) << cluster->describe(kNamespace);
  EXPECT_TRUE(file_exists(volumes + "/pods-checkpoints/federated_metrics.json"));
}

// helm uninstall takes everything the chart made: the operator's Deployment and pods, its RBAC,
// ServiceAccount, Service, dashboards and the leader-election Lease. The CRD stays, as Helm keeps
// every CRD from a chart's crds/ folder: deleting it would delete every FederationRun in the
// cluster (the README says how to remove it).
TEST(Cluster, HelmUninstallLeavesNothingOfZk0ButTheCrd) {
  std::string out;
  ASSERT_EQ(cluster->helm("uninstall " + kRelease + " --namespace " + kNamespace + " --wait --timeout 2m", &out), 0) << out;
  const std::string selector = "?labelSelector=app.kubernetes.io%2Fname%3Dzk0";
  ASSERT_TRUE(wait_until([&] {
    for (const std::string& path :
         {ns_path("pods" + selector), ns_path("services" + selector), ns_path("configmaps" + selector), ns_path("serviceaccounts" + selector),
          "/apis/apps/v1/namespaces/" + kNamespace + "/deployments" + selector,
          "/apis/rbac.authorization.k8s.io/v1/namespaces/" + kNamespace + "/roles" + selector,
          "/apis/rbac.authorization.k8s.io/v1/namespaces/" + kNamespace + "/rolebindings" + selector,
          "/apis/rbac.authorization.k8s.io/v1/clusterroles" + selector, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" + selector,
          "/apis/coordination.k8s.io/v1/namespaces/" + kNamespace + "/leases"}) {
      const json list = cluster->get(path);
      if (!list.is_object() || !list["items"].empty()) return false;
    }
    return true;
  }, 120s)) << cluster->describe(kNamespace);
  EXPECT_TRUE(cluster->get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/federationruns.zk0.io").is_object());
}
