// The operator against a real kube-apiserver (with etcd and the garbage collector) on loopback:
// the tests apply FederationRuns with the real kubectl and play the kubelet by writing pod status.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>

#include "core/metrics/metrics_server.h"
#include "core/security/certificate.h"
#include "core/security/join_token.h"
#include "core/spec/federation_spec.h"
#include "core/util/fs.h"
#include "operator/applied_children.h"
#include "operator/children.h"
#include "operator/kube/client.h"
#include "operator/kube/time_format.h"
#include "support/kube_cluster.h"
#include "support/maximal_specs.h"
#include "support/prometheus.h"

using namespace zk0;
using namespace zk0::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

KubeCluster* cluster = nullptr;

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Without the cluster every test would be skipped, which must not pass: fail the binary.
    const auto fail = [](const std::string& why) {
      std::cerr << "cluster setup failed: " << why << "\n";
      std::exit(1);
    };
    try {
      cluster = new KubeCluster("kube", {std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationruns.yaml",
                                         std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationmemberships.yaml"});
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }
  void TearDown() override { delete cluster; }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

std::string example(const std::string& name) { return std::string(ZK0_SOURCE_DIR) + "/examples/k8s/" + name; }

// One namespace, one operator process, one fake aggregator status endpoint per test.
class OperatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns = "t-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : ns) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    ns = ns.substr(0, 24);  // short: service-account user names go into certificate CNs (64 bytes)
    ASSERT_EQ(cluster->kubectl("create namespace " + ns), 0);
    api = std::make_unique<kube::KubeClient>(kube::KubeConfig::from_kubeconfig(cluster->admin_kubeconfig()));
    aggregator_status = json{{"phase", "Running"}, {"round", 0}, {"rounds", 30}, {"ready_clients", 0}, {"clients", json::object()}};
    aggregator = std::make_unique<MetricsServer>("fake-aggregator", "127.0.0.1:0");
    aggregator->serve_json("/status", [this] {
      std::lock_guard<std::mutex> lock(status_mu);
      return aggregator_status.dump();
    });
  }
  void TearDown() override {
    operators.clear();
    cluster->kubectl("delete namespace " + ns + " --wait=false");
  }

  Process& start_operator(const std::string& identity, std::vector<std::string> extra = {},
                          const std::string& kubeconfig = "") {
    std::vector<std::string> argv{bin("zk0-operator"), "--kubeconfig", kubeconfig.empty() ? cluster->admin_kubeconfig() : kubeconfig,
                                  "--watch-namespace", ns, "--leader-election-namespace", ns, "--identity", identity,
                                  "--metrics-listen", "127.0.0.1:0", "--aggregator-metrics-port", std::to_string(aggregator->port()),
                                  "--aggregator-image", "zk0/aggregator:test", "--worker-image", "zk0/worker:test"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    operators.push_back(std::make_unique<Process>(argv, cluster->dir() + "/operator-" + ns + "-" + identity + ".log"));
    return *operators.back();
  }

  std::string kubectl(const std::string& args) {
    std::string out;
    EXPECT_EQ(cluster->kubectl("-n " + ns + " " + args, &out), 0) << args << "\n" << out;
    return out;
  }
  std::optional<json> get(const std::string& path) {
    try {
      return api->get(path);
    } catch (const kube::ApiError& e) {
      if (e.not_found()) return std::nullopt;
      throw;
    }
  }
  std::optional<json> pod(const std::string& name) { return get("/api/v1/namespaces/" + ns + "/pods/" + name); }
  // The run, with an empty status object until the operator writes one (its first status comes
  // at the end of the reconcile that created the pods, a moment after they appear).
  json run(const std::string& name) {
    json r = api->get("/apis/zk0.io/v1alpha1/namespaces/" + ns + "/federationruns/" + name);
    if (!r.contains("status") || !r["status"].is_object()) r["status"] = json::object();
    return r;
  }
  // status.clients[index], or {} while the operator has not written it (it creates pods first).
  json client_record(const std::string& name, size_t index) {
    const json clients = run(name)["status"].value("clients", json::array());
    return index < clients.size() ? clients[index] : json::object();
  }
  std::string condition(const json& r, const std::string& type, std::string* reason = nullptr) {
    for (const auto& c : r.value("status", json::object()).value("conditions", json::array()))
      if (c.value("type", "") == type) {
        if (reason) *reason = c.value("reason", "");
        return c.value("status", "");
      }
    return "";
  }
  // Plays the kubelet: sets a pod's phase, IP and main container state.
  void set_pod_status(const std::string& name, const std::string& phase, int exit_code = 0, int restarts = 0,
                      const std::string& termination_message = "") {
    json state = phase == "Running" ? json{{"running", {{"startedAt", "2026-01-01T00:00:00Z"}}}}
                 : phase == "Pending" ? json{{"waiting", {{"reason", "ContainerCreating"}}}}
                                      : json{{"terminated", {{"exitCode", exit_code}, {"reason", exit_code ? "Error" : "Completed"},
                                                             {"startedAt", "2026-01-01T00:00:00Z"}, {"finishedAt", "2026-01-01T00:01:00Z"}}}};
    if (!termination_message.empty()) state["terminated"]["message"] = termination_message;
    const auto p = pod(name);
    ASSERT_TRUE(p) << name;
    const std::string container = (*p)["spec"]["containers"][0]["name"];
    const json patch = {{"status",
                         {{"phase", phase},
                          {"podIP", "127.0.0.1"},
                          {"hostIP", "10.0.0.7"},
                          {"podIPs", json::array({{{"ip", "127.0.0.1"}}})},
                          {"containerStatuses",
                           json::array({{{"name", container}, {"image", (*p)["spec"]["containers"][0]["image"]}, {"imageID", ""},
                                         {"ready", phase == "Running"}, {"restartCount", restarts}, {"state", state}}})}}}};
    api->patch("/api/v1/namespaces/" + ns + "/pods/" + name + "/status", patch, kube::PatchType::Merge);
  }
  std::string uid_of(const std::string& pod_name) {
    const auto p = pod(pod_name);
    return p ? (*p)["metadata"].value("uid", "") : "";
  }
  std::vector<std::string> events(const std::string& reason) {
    std::vector<std::string> messages;
    const json list = api->get("/api/v1/namespaces/" + ns + "/events");
    for (const auto& e : list["items"])
      if (e.value("reason", "") == reason) messages.push_back(e.value("message", ""));
    return messages;
  }
  // The operator checks which keys a Secret holds, not their content. Without the key, a Secret
  // as a hand-made one often is: ca.crt and tls.crt only.
  void create_tls_secret(const std::string& name, bool with_key = true) {
    const Certificates certs = generate_certificates(make_temp_dir("tls-" + ns));
    kubectl("delete secret " + name + " --ignore-not-found");
    kubectl("create secret generic " + name + " --from-file=ca.crt=" + certs.ca + " --from-file=tls.crt=" + certs.server_cert +
            (with_key ? " --from-file=tls.key=" + certs.server_key : std::string()));
  }
  void apply(const std::string& yaml) {
    const std::string path = cluster->dir() + "/" + ns + "-run.yaml";
    std::ofstream(path) << yaml;
    kubectl("apply -f " + path);
  }
  // A kubeconfig of the operator's service account bound to the chart's RBAC, rendered by the
  // real helm (a Role in the namespace, the chart's default scope); empty when it binds none.
  std::string chart_rbac_kubeconfig() {
    const std::string rendered = cluster->dir() + "/" + ns + "-rbac.yaml";
    run_command("(" + cluster->tool("helm") + " template zk0 " + ZK0_SOURCE_DIR + "/helm/zk0 --namespace " + ns +
                " --show-only templates/rbac.yaml 2>/dev/null) > " + rendered);
    kubectl("apply -f " + rendered);
    const json bindings = api->get("/apis/rbac.authorization.k8s.io/v1/namespaces/" + ns + "/rolebindings");
    for (const auto& b : bindings["items"])
      for (const auto& s : b.value("subjects", json::array()))
        if (s.value("kind", "") == "ServiceAccount" && s.value("namespace", "") == ns)
          return cluster->kubeconfig_for("system:serviceaccount:" + ns + ":" + s.value("name", ""));
    ADD_FAILURE() << "no RoleBinding to a ServiceAccount in " << ns;
    return "";
  }
  std::string logs() {
    std::string all;
    for (const auto& o : operators) all += "--- " + o->log_path() + "\n" + o->log();
    return all;
  }

  std::string ns;
  std::unique_ptr<kube::KubeClient> api;
  std::mutex status_mu;
  json aggregator_status;
  std::unique_ptr<MetricsServer> aggregator;
  std::vector<std::unique_ptr<Process>> operators;
};

// A small run: three synthetic clients, quorum of two.
std::string small_run(const std::string& name, const std::string& run_policy = "{backoffLimit: 2}") {
  return "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: " + name + "}\nspec:\n  rounds: 5\n  clients:\n" +
         "    - {name: c0, dataset: {synthetic: {task: a}}}\n    - {name: c1, dataset: {synthetic: {task: b}}}\n" +
         "    - {name: c2, dataset: {synthetic: {task: c}}}\n  evaluation: {dataset: {synthetic: {task: d}}}\n" +
         "  strategy: {minFitClients: 2, minAvailableClients: 2}\n  runPolicy: " + run_policy + "\n";
}

}  // namespace

TEST_F(OperatorTest, ExampleRunGetsValidChildrenOnceItsTlsSecretsExist) {
  start_operator("op-1", {"--mutual-tls", "--allow-host-path-prefix=/srv/lerobot", "--metrics-namespace=monitoring"});
  kubectl("apply -f " + example("federationrun.yaml"));
  const std::string name = "so100-pick-place";
  // With mutual TLS and no Secrets yet, the run waits visibly instead of creating pods that hang;
  // the message names every certificate it waits for, one per pod.
  std::string reason;
  ASSERT_TRUE(wait_until([&] { return condition(run(name), "Ready", &reason) == "False" && reason == "SecretMissing"; }, 30s)) << logs();
  EXPECT_FALSE(pod(name + "-aggregator"));
  // The operator writes the status before it records the event.
  std::vector<std::string> missing;
  ASSERT_TRUE(wait_until([&] { return !(missing = events("SecretMissing")).empty(); }, 10s)) << logs();
  for (const char* secret : {"-aggregator-tls", "-owner-a-tls", "-owner-b-tls", "-owner-c-tls"})
    EXPECT_NE(missing[0].find(name + secret), std::string::npos) << missing[0];
  EXPECT_EQ(missing[0].find(name + "-checkpoint-key"), std::string::npos) << "the operator makes that one itself";
  // A Secret without a key its pod mounts would leave that pod in ContainerCreating: the run waits
  // again, naming the Secret and the key.
  for (const char* secret : {"-aggregator-tls", "-owner-a-tls", "-owner-b-tls"}) create_tls_secret(name + secret);
  create_tls_secret(name + "-owner-c-tls", false);
  ASSERT_TRUE(wait_until([&] { return condition(run(name), "Ready", &reason) == "False" && reason == "SecretInvalid"; }, 30s)) << logs();
  std::vector<std::string> invalid;
  ASSERT_TRUE(wait_until([&] { return !(invalid = events("SecretInvalid")).empty(); }, 10s)) << logs();
  EXPECT_NE(invalid[0].find(name + "-owner-c-tls lacks key tls.key"), std::string::npos) << invalid[0];
  EXPECT_FALSE(pod(name + "-aggregator"));
  create_tls_secret(name + "-owner-c-tls");
  // Then for owner-b's dataset claim, named with the field that names it.
  ASSERT_TRUE(wait_until([&] { return condition(run(name), "Ready", &reason) == "False" && reason == "ClaimMissing"; }, 30s)) << logs();
  EXPECT_FALSE(pod(name + "-aggregator"));
  std::vector<std::string> claim_missing;
  ASSERT_TRUE(wait_until([&] { return !(claim_missing = events("ClaimMissing")).empty(); }, 10s)) << logs();
  EXPECT_NE(claim_missing[0].find("owner-b-datasets (spec.clients[1].dataset.volumeClaim)"), std::string::npos) << claim_missing[0];
  api->create("/api/v1/namespaces/" + ns + "/persistentvolumeclaims",
              {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"}, {"metadata", {{"name", "owner-b-datasets"}}},
               {"spec", {{"accessModes", {"ReadOnlyMany"}}, {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}});
  ASSERT_TRUE(wait_until([&] { return pod(name + "-worker-owner-c").has_value(); }, 60s)) << logs();

  const json r = run(name);
  const json cm = *get("/api/v1/namespaces/" + ns + "/configmaps/" + name + "-spec");
  const json agg = *pod(name + "-aggregator");
  const json a = *pod(name + "-worker-owner-a");
  const json b = *pod(name + "-worker-owner-b");
  const json c = *pod(name + "-worker-owner-c");
  const json svc = *get("/api/v1/namespaces/" + ns + "/services/" + name + "-aggregator");
  const json pvc = *get("/api/v1/namespaces/" + ns + "/persistentvolumeclaims/" + name + "-checkpoints");
  const json policy = *get("/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/" + name + "-aggregator");
  for (const json* o : {&cm, &agg, &a, &b, &c, &svc, &pvc, &policy}) {
    const auto& refs = (*o)["metadata"]["ownerReferences"];
    ASSERT_EQ(refs.size(), 1u) << o->dump();
    EXPECT_EQ(refs[0]["uid"], r["metadata"]["uid"]);
    EXPECT_TRUE(refs[0]["controller"].get<bool>());
    EXPECT_EQ((*o)["metadata"]["labels"]["app.kubernetes.io/managed-by"], "zk0-operator");
  }
  // The spec the pods read: in-pod paths, TLS from the Secret's mount, parsed by the same parser.
  const FederationSpec in_pod = parse_spec(cm["data"]["run.yaml"].get<std::string>());
  EXPECT_EQ(in_pod.output_dir, "/var/lib/zk0");
  EXPECT_EQ(in_pod.clients[0].dataset.path, "/data/clients/owner-a");
  EXPECT_EQ(in_pod.clients[1].dataset.path, "/data/clients/owner-b");
  EXPECT_EQ(in_pod.clients[2].dataset.repo_id, "lerobot/svla_so101_pickplace");
  EXPECT_TRUE(in_pod.transport.tls.mutual);
  EXPECT_EQ(in_pod.transport.tls.cert_file, "/etc/zk0/tls/tls.crt");
  for (const auto& client : in_pod.clients) EXPECT_EQ(client.tls.cert_file, "/etc/zk0/tls/tls.crt");  // each pod's own Secret
  EXPECT_EQ(in_pod.checkpoints.signing_key_file, "/etc/zk0/checkpoint-key/key");
  // The signing key: made once by the operator, owned by the run, 32 random bytes as hex.
  const json key = *get("/api/v1/namespaces/" + ns + "/secrets/" + name + "-checkpoint-key");
  EXPECT_EQ(key["metadata"]["ownerReferences"][0]["uid"], r["metadata"]["uid"]);
  EXPECT_EQ(key["data"]["key"].get<std::string>().size(), 88u);  // base64 of 64 hex characters
  // Each pod mounts only its own certificate: never the aggregator's key in a worker.
  const auto secrets_of = [](const json& p) {
    std::set<std::string> names;
    for (const auto& v : p["spec"]["volumes"])
      if (v.contains("secret")) names.insert(v["secret"]["secretName"].get<std::string>());
    return names;
  };
  EXPECT_EQ(secrets_of(agg), (std::set<std::string>{name + "-aggregator-tls", name + "-checkpoint-key"}));
  EXPECT_EQ(secrets_of(a), std::set<std::string>{name + "-owner-a-tls"});
  EXPECT_EQ(secrets_of(b), std::set<std::string>{name + "-owner-b-tls"});
  EXPECT_EQ(secrets_of(c), std::set<std::string>{name + "-owner-c-tls"});

  // GPU request, placement, security defaults, dataset sources.
  const auto& wc = a["spec"]["containers"][0];
  EXPECT_EQ(wc["resources"]["limits"]["nvidia.com/gpu"], "1");
  EXPECT_EQ(wc["resources"]["requests"]["memory"], "32Gi");
  EXPECT_EQ(a["spec"]["nodeSelector"]["zk0.io/robot-owner"], "owner-a");
  EXPECT_EQ(a["spec"]["tolerations"][0]["key"], "nvidia.com/gpu");
  EXPECT_FALSE(a["spec"]["automountServiceAccountToken"].get<bool>());
  EXPECT_TRUE(a["spec"]["securityContext"]["runAsNonRoot"].get<bool>());
  EXPECT_TRUE(wc["securityContext"]["readOnlyRootFilesystem"].get<bool>());
  EXPECT_FALSE(wc["securityContext"]["allowPrivilegeEscalation"].get<bool>());
  EXPECT_EQ(wc["securityContext"]["capabilities"]["drop"][0], "ALL");
  EXPECT_EQ(a["spec"]["restartPolicy"], "Never");
  // Probes: grpc health on the aggregator's plaintext health port (its federation port is mutual
  // TLS, which grpc probes cannot speak), /healthz on each worker's metrics port.
  const auto& ac = agg["spec"]["containers"][0];
  EXPECT_EQ(ac["readinessProbe"]["grpc"], (json{{"port", 50052}, {"service", "zk0.v1.Federation"}}));
  EXPECT_EQ(ac["livenessProbe"]["grpc"], (json{{"port", 50052}, {"service", "liveness"}}));
  EXPECT_EQ(wc["livenessProbe"]["httpGet"], (json{{"path", "/healthz"}, {"port", "metrics"}, {"scheme", "HTTP"}}));
  const std::string volumes_a = a["spec"]["volumes"].dump(), volumes_b = b["spec"]["volumes"].dump();
  EXPECT_NE(volumes_a.find("\"hostPath\":{\"path\":\"/srv/lerobot/so100-pick-a\""), std::string::npos) << volumes_a;
  EXPECT_NE(volumes_b.find("\"claimName\":\"owner-b-datasets\""), std::string::npos) << volumes_b;
  EXPECT_NE(b["spec"]["containers"][0]["volumeMounts"].dump().find("\"subPath\":\"so100-pick-b\""), std::string::npos);
  // Hub sources come through init containers: c's dataset, and for every pod SmolVLA's
  // checkpoint and its backbone's config and tokenizer.
  ASSERT_EQ(c["spec"]["initContainers"].size(), 3u);
  EXPECT_NE(c["spec"]["initContainers"][0]["args"].dump().find("lerobot/svla_so101_pickplace"), std::string::npos);
  for (const json* p : {&a, &agg}) {
    const std::string init = (*p)["spec"]["initContainers"].dump();
    EXPECT_NE(init.find(R"(["download","lerobot/smolvla_base"])"), std::string::npos) << init;
    EXPECT_NE(init.find(R"(["download","HuggingFaceTB/SmolVLM2-500M-Video-Instruct","config.json","tokenizer.json","tokenizer_config.json"])"),
              std::string::npos) << init;
  }
  EXPECT_NE(c["spec"]["affinity"].dump().find("NVIDIA-H100-80GB-HBM3"), std::string::npos);
  EXPECT_NE(agg["spec"]["volumes"].dump().find("so100-pick-place-checkpoints"), std::string::npos);
  // Scratch space is bounded.
  for (const json* p : {&agg, &a, &c})
    for (const auto& v : (*p)["spec"]["volumes"]) {
      if (v.contains("emptyDir")) {
        EXPECT_TRUE(v["emptyDir"].contains("sizeLimit")) << v.dump();
      }
    }
  EXPECT_EQ(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
  EXPECT_EQ(svc["spec"]["ports"][0]["port"], 50051);
  // gRPC reaches the aggregator only from this run's workers.
  EXPECT_EQ(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["zk0.io/run"], name);
  EXPECT_EQ(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "worker");
  EXPECT_EQ(policy["spec"]["ingress"][0]["ports"][0]["port"], 50051);
  // Metrics only from the namespaces allowed to scrape; workers accept nothing else.
  EXPECT_EQ(policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"], json::array({"monitoring"}));
  const json workers = *get("/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/" + name + "-workers");
  EXPECT_EQ(workers["spec"]["ingress"].size(), 1u);
  EXPECT_EQ(workers["spec"]["ingress"][0]["ports"][0]["port"], 9465);

  // Every child against Kubernetes' strict JSON schemas.
  const std::string objects = cluster->dir() + "/" + ns + "-children.json";
  {
    std::string out;
    ASSERT_EQ(cluster->kubectl("-n " + ns + " get pods,services,configmaps,persistentvolumeclaims,networkpolicies -l app.kubernetes.io/managed-by=zk0-operator -o json", &out), 0);
    std::ofstream(objects) << out;
  }
  int code = 0;
  const std::string report = run_command(std::string(ZK0_SOURCE_DIR) + "/.venv/bin/python " + ZK0_SOURCE_DIR +
                                             "/tests/kube/validate_manifests.py " + objects, &code);
  EXPECT_EQ(code, 0) << report;
  EXPECT_NE(report.find("checked 9 manifests, 0 problems"), std::string::npos) << report;
}

// Every evaluation set reaches the aggregator's pod at a path of its own: a claim mounted read-only
// (with its subPath), a Hub dataset through its own download; the in-pod spec names the paths.
TEST(OperatorChildren, EachEvaluationSetIsMountedForTheAggregatorAtItsOwnPath) {
  const FederationSpec spec = parse_spec(test::kMaximalSpecs[1]);
  ASSERT_EQ(spec.evaluation.sets.size(), 2u);
  const json run = {{"metadata", {{"name", "sets"}, {"namespace", "ns"}, {"uid", "u"}}}};
  const op::OperatorSettings settings;
  const json pod = op::aggregator_pod(run, spec, settings, 1);
  const std::string volumes = pod["spec"]["volumes"].dump(), mounts = pod["spec"]["containers"][0]["volumeMounts"].dump();
  EXPECT_NE(volumes.find(R"({"name":"evaluation-sponsor-pick","persistentVolumeClaim":{"claimName":"sponsor-data","readOnly":true}})"),
            std::string::npos)
      << volumes;
  EXPECT_NE(mounts.find(R"({"mountPath":"/data/evaluation/sponsor-pick","name":"evaluation-sponsor-pick","readOnly":true,"subPath":"pick"})"),
            std::string::npos)
      << mounts;
  EXPECT_NE(pod["spec"]["initContainers"].dump().find("owner/eval"), std::string::npos) << pod["spec"]["initContainers"];
  const FederationSpec in_pod = op::in_pod_spec(spec, settings);
  EXPECT_EQ(in_pod.evaluation.sets[0].dataset.repo_id, "owner/eval");
  EXPECT_EQ(in_pod.evaluation.sets[1].dataset.path, "/data/evaluation/sponsor-pick");
  EXPECT_FALSE(in_pod.evaluation.sets[1].dataset.volume_claim);
}

TEST_F(OperatorTest, StatusFollowsPodsAndTheAggregatorUntilSuccess) {
  start_operator("op-1");
  apply(small_run("r1"));
  ASSERT_TRUE(wait_until([&] { return pod("r1-worker-c2").has_value(); }, 60s)) << logs();
  // The status is written at the end of the reconcile that created the pods.
  EXPECT_TRUE(wait_until([&] { return run("r1")["status"].value("phase", "") == "Pending"; }, 10s)) << run("r1").dump();
  EXPECT_TRUE(wait_until([&] { return !events("Created").empty(); }, 10s));
  // The kubelet starts the pods; the aggregator reports round 3 and its evaluation loss.
  {
    std::lock_guard<std::mutex> lock(status_mu);
    aggregator_status["round"] = 3;
    aggregator_status["ready_clients"] = 3;
    aggregator_status["last_server_eval_loss"] = 0.5;
    // A set the spec does not name is not the run's to report.
    aggregator_status["evaluation_losses"] = {{"heldout", 0.5}, {"unnamed", 9}};
    aggregator_status["clients"] = {{"c0",
                                     {{"state", "training"},
                                      {"last_loss", 0.25},
                                      {"contribution_score_by_set", {{"heldout", {{"first_order", 0.125}}}, {"unnamed", {{"first_order", 1}}}}}}}};
  }
  set_pod_status("r1-aggregator", "Running");
  for (const char* c : {"c0", "c1", "c2"}) set_pod_status(std::string("r1-worker-") + c, "Running");
  ASSERT_TRUE(wait_until([&] { return run("r1")["status"].value("currentRound", 0) == 3; }, 30s)) << logs();
  json r = run("r1");
  EXPECT_EQ(r["status"]["phase"], "Running");
  EXPECT_EQ(r["status"]["readyClients"], 3);
  EXPECT_DOUBLE_EQ(r["status"]["serverEvalLoss"].get<double>(), 0.5);
  EXPECT_EQ(condition(r, "Running"), "True");
  EXPECT_EQ(condition(r, "Ready"), "True");
  EXPECT_EQ(condition(r, "QuorumLost"), "False");
  EXPECT_EQ(r["status"]["clients"][0]["lastLoss"], 0.25);
  EXPECT_EQ(r["status"]["evaluationSets"], json::parse(R"([{"name": "heldout", "loss": 0.5}])"));
  EXPECT_EQ(r["status"]["clients"][0]["contributionScoreBySet"], json::parse(R"([{"set": "heldout", "firstOrder": 0.125}])"));
  EXPECT_EQ(r["status"]["observedGeneration"], r["metadata"]["generation"]);
  for (const auto& c : r["status"]["conditions"]) EXPECT_EQ(c["observedGeneration"], r["metadata"]["generation"]);
  // kubectl's printer columns.
  const std::string table = kubectl("get fedrun r1");
  EXPECT_NE(table.find("Running"), std::string::npos) << table;
  EXPECT_NE(table.find("0.5"), std::string::npos) << table;

  {
    std::lock_guard<std::mutex> lock(status_mu);
    aggregator_status["round"] = 4;
  }
  ASSERT_TRUE(wait_until([&] { return !events("RoundCompleted").empty(); }, 30s)) << logs();
  EXPECT_NE(events("RoundCompleted")[0].find("round 3 of 5 completed"), std::string::npos);

  // The aggregator exits 0 after the last round: the run succeeds and running workers go.
  set_pod_status("r1-aggregator", "Succeeded");
  ASSERT_TRUE(wait_until([&] { return run("r1")["status"].value("phase", "") == "Succeeded"; }, 30s)) << logs();
  r = run("r1");
  EXPECT_EQ(condition(r, "Succeeded"), "True");
  EXPECT_EQ(condition(r, "Failed"), "False");
  EXPECT_TRUE(r["status"].contains("completionTime"));
  EXPECT_TRUE(wait_until([&] { return !pod("r1-worker-c0") && !pod("r1-worker-c1") && !pod("r1-worker-c2"); }, 30s));
  EXPECT_TRUE(pod("r1-aggregator").has_value()) << "the finished aggregator stays for its logs";
}

TEST_F(OperatorTest, FailedPodsAreReplacedUntilTheBackoffLimitThenTheClientIsExcluded) {
  start_operator("op-1");
  apply(small_run("r2", "{backoffLimit: 2}"));
  ASSERT_TRUE(wait_until([&] { return pod("r2-worker-c0").has_value(); }, 60s)) << logs();
  // Two failures are within the limit: each failed pod is replaced by a new one.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const std::string uid = uid_of("r2-worker-c0");
    ASSERT_FALSE(uid.empty());
    EXPECT_EQ((*pod("r2-worker-c0"))["metadata"]["annotations"]["zk0.io/attempt"], std::to_string(attempt));
    // 137: what a container killed after failed liveness probes exits with.
    set_pod_status("r2-worker-c0", "Failed", attempt == 2 ? 137 : 1);
    if (attempt < 3) {
      ASSERT_TRUE(wait_until([&] { const auto u = uid_of("r2-worker-c0"); return !u.empty() && u != uid; }, 30s)) << logs();
    }
  }
  // The third failure exceeds backoffLimit 2: excluded, not replaced; the run goes on (quorum 2).
  ASSERT_TRUE(wait_until([&] { return client_record("r2", 0).value("state", "") == "Excluded"; }, 30s)) << logs();
  json r = run("r2");
  EXPECT_EQ(r["status"]["clients"][0]["failures"], 3);
  EXPECT_EQ(r["status"]["clients"][0]["reason"], "BackoffLimitExceeded");
  // Excluded for good: the last failed pod stays for its logs and no new one comes.
  const std::string last = uid_of("r2-worker-c0");
  EXPECT_TRUE(holds_for([&] { return uid_of("r2-worker-c0") == last && (*pod("r2-worker-c0"))["status"]["phase"] == "Failed"; }, 2s));
  EXPECT_TRUE(wait_until([&] { return events("ClientPodFailed").size() == 3u; }, 10s)) << events("ClientPodFailed").size();
  EXPECT_TRUE(wait_until([&] { return events("ClientExcluded").size() == 1u; }, 10s)) << events("ClientExcluded").size();
  EXPECT_NE(r["status"]["phase"], "Failed");

  // Container restarts count too: c1 restarting in place three times is excluded as well.
  set_pod_status("r2-worker-c1", "Running", 0, 3);
  ASSERT_TRUE(wait_until([&] { return run("r2")["status"]["clients"][1].value("state", "") == "Excluded"; }, 30s)) << logs();
  // One usable client is fewer than minFitClients: quorum lost, the run fails and its pods go.
  ASSERT_TRUE(wait_until([&] { return run("r2")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  r = run("r2");
  EXPECT_EQ(condition(r, "QuorumLost"), "True");
  std::string reason;
  EXPECT_EQ(condition(r, "Failed", &reason), "True");
  EXPECT_EQ(reason, "QuorumLost");
  EXPECT_TRUE(wait_until([&] { return !pod("r2-worker-c2") && !pod("r2-aggregator"); }, 30s));
}

// Exit codes 2 (invalid input) and 3 (the run failed by its own rules) are final: a new pod
// cannot help. For a worker that means excluded at once, for the aggregator a failed run.
TEST_F(OperatorTest, ExitCodesForInvalidInputAndRunFailureAreNotRetried) {
  start_operator("op-1");
  apply(small_run("r3", "{backoffLimit: 5}"));
  ASSERT_TRUE(wait_until([&] { return pod("r3-worker-c0").has_value() && pod("r3-aggregator").has_value(); }, 60s)) << logs();
  // A worker whose dataset is invalid exits 2: excluded after one failure, its pod kept.
  const std::string worker_uid = uid_of("r3-worker-c0");
  set_pod_status("r3-worker-c0", "Failed", 2);
  ASSERT_TRUE(wait_until([&] { return client_record("r3", 0).value("state", "") == "Excluded"; }, 30s)) << logs();
  const json client = run("r3")["status"]["clients"][0];
  EXPECT_EQ(client["reason"], "InvalidInput");
  EXPECT_EQ(client["failures"], 1);
  EXPECT_EQ(client["attempts"], 1);
  EXPECT_TRUE(holds_for([&] { return uid_of("r3-worker-c0") == worker_uid; }, 2s)) << "the pod was replaced";
  EXPECT_TRUE(wait_until([&] { return events("ClientExcluded").size() == 1u; }, 10s)) << events("ClientExcluded").size();
  // The aggregator exiting 2 (its spec is invalid) fails the run without a second pod.
  apply(small_run("r3b", "{backoffLimit: 5}"));
  ASSERT_TRUE(wait_until([&] { return pod("r3b-aggregator").has_value(); }, 60s)) << logs();
  set_pod_status("r3b-aggregator", "Failed", 2);
  ASSERT_TRUE(wait_until([&] { return run("r3b")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  std::string reason;
  EXPECT_EQ(condition(run("r3b"), "Failed", &reason), "True");
  EXPECT_EQ(reason, "InvalidInput");
  EXPECT_EQ(run("r3b")["status"]["aggregator"]["attempts"], 1);
  // And exiting 3 (its quorum was lost) likewise.
  set_pod_status("r3-aggregator", "Failed", 3);
  ASSERT_TRUE(wait_until([&] { return run("r3")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  EXPECT_EQ(condition(run("r3"), "Failed", &reason), "True");
  EXPECT_EQ(reason, "RunFailed");
  EXPECT_EQ(run("r3")["status"]["aggregator"]["attempts"], 1);
}

// Pods that cannot start say why on the run, in the kubelet's words and naming the pod, with one
// event per change; once they start, PodsReady is true. (A pod the scheduler cannot place is
// shown by the cluster test, with a real scheduler.)
TEST_F(OperatorTest, PodsThatCannotStartAreNamedInPodsReady) {
  start_operator("op-1");
  apply(small_run("r14"));
  ASSERT_TRUE(wait_until([&] { return pod("r14-worker-c1").has_value() && pod("r14-aggregator").has_value(); }, 60s)) << logs();
  const auto waiting = [&](const std::string& name, const std::string& reason, const std::string& message) {
    const auto p = pod(name);
    ASSERT_TRUE(p) << name;
    const json status = {{"phase", "Pending"},
                         {"containerStatuses",
                          json::array({{{"name", (*p)["spec"]["containers"][0]["name"]}, {"image", (*p)["spec"]["containers"][0]["image"]},
                                        {"imageID", ""}, {"ready", false}, {"restartCount", 0},
                                        {"state", {{"waiting", {{"reason", reason}, {"message", message}}}}}}})}};
    api->patch("/api/v1/namespaces/" + ns + "/pods/" + name + "/status", {{"status", status}}, kube::PatchType::Merge);
  };
  waiting("r14-worker-c1", "ImagePullBackOff", "Back-off pulling image \"zk0/worker:test\"");
  std::string reason, message;
  const auto pods_ready = [&] {
    for (const auto& c : run("r14")["status"].value("conditions", json::array()))
      if (c.value("type", "") == "PodsReady") {
        reason = c.value("reason", "");
        message = c.value("message", "");
        return c.value("status", "");
      }
    return std::string();
  };
  ASSERT_TRUE(wait_until([&] { return pods_ready() == "False" && reason == "ImagePullFailed"; }, 30s)) << logs();
  EXPECT_NE(message.find("pod r14-worker-c1: container worker (image zk0/worker:test): ImagePullBackOff"), std::string::npos) << message;
  ASSERT_TRUE(wait_until([&] { return events("ImagePullFailed").size() == 1u; }, 10s)) << logs();
  waiting("r14-aggregator", "CreateContainerConfigError", "secret \"r14-checkpoint-key\" not found");
  ASSERT_TRUE(wait_until([&] { return pods_ready() == "False" && message.find("pod r14-aggregator: ") != std::string::npos; }, 30s))
      << logs();
  EXPECT_NE(message.find("CreateContainerConfigError: secret \"r14-checkpoint-key\" not found"), std::string::npos) << message;
  for (const auto& name : {"r14-aggregator", "r14-worker-c0", "r14-worker-c1", "r14-worker-c2"}) set_pod_status(name, "Running");
  ASSERT_TRUE(wait_until([&] { return pods_ready() == "True" && reason == "PodsRunning"; }, 30s)) << logs();
}

TEST_F(OperatorTest, SuspendDeletesPodsKeepsCheckpointsAndResumeRecreatesThem) {
  start_operator("op-1");
  apply(small_run("r4"));
  ASSERT_TRUE(wait_until([&] { return pod("r4-worker-c2").has_value(); }, 60s)) << logs();
  kubectl("patch fedrun r4 --type merge -p '{\"spec\":{\"runPolicy\":{\"suspend\":true}}}'");
  ASSERT_TRUE(wait_until([&] { return run("r4")["status"].value("phase", "") == "Suspended"; }, 30s)) << logs();
  EXPECT_TRUE(wait_until([&] { return !pod("r4-aggregator") && !pod("r4-worker-c0"); }, 30s));
  EXPECT_TRUE(get("/api/v1/namespaces/" + ns + "/persistentvolumeclaims/r4-checkpoints").has_value());
  EXPECT_EQ(condition(run("r4"), "Suspended"), "True");
  kubectl("patch fedrun r4 --type merge -p '{\"spec\":{\"runPolicy\":{\"suspend\":false}}}'");
  ASSERT_TRUE(wait_until([&] { return pod("r4-aggregator").has_value() && pod("r4-worker-c2").has_value(); }, 30s)) << logs();
  EXPECT_TRUE(wait_until([&] { return condition(run("r4"), "Suspended") == "False"; }, 10s)) << run("r4").dump();
  const json r = run("r4");
  EXPECT_EQ(r["status"]["aggregator"].value("failures", 0), 0) << "a suspension is not a failure";
  EXPECT_TRUE(wait_until([&] { return !events("Resumed").empty(); }, 10s)) << logs();
}

TEST_F(OperatorTest, DeletingTheRunDeletesItsChildren) {
  start_operator("op-1");
  apply(small_run("r5"));
  ASSERT_TRUE(wait_until([&] { return pod("r5-worker-c2").has_value(); }, 60s)) << logs();
  kubectl("delete fedrun r5 --wait=false");
  EXPECT_TRUE(wait_until(
      [&] {
        return !pod("r5-aggregator") && !pod("r5-worker-c0") && !get("/api/v1/namespaces/" + ns + "/configmaps/r5-spec") &&
               !get("/api/v1/namespaces/" + ns + "/services/r5-aggregator") &&
               !get("/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/r5-aggregator") &&
               !get("/api/v1/namespaces/" + ns + "/persistentvolumeclaims/r5-checkpoints");
      },
      60s));
}

// Both reconcilers write a child only when its content changed or the resync period passed since
// they last applied it: a hand edit survives until then and is undone at the first pass after it.
TEST_F(OperatorTest, AChildIsAppliedAgainWhenItChangedOrItsResyncPeriodPassed) {
  constexpr auto kPeriod = 2s;
  op::AppliedChildren children(kPeriod);
  const std::string owner = ns + "/owner", path = "/api/v1/namespaces/" + ns + "/configmaps/child";
  json child = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "child"}, {"namespace", ns}}}, {"data", {{"k", "applied"}}}};
  const auto value = [&] { return api->get(path)["data"].value("k", ""); };
  const auto edit_by_hand = [&] { kubectl("patch configmap child --type merge -p '{\"data\":{\"k\":\"edited\"}}'"); };
  children.apply(*api, owner, path, child);
  ASSERT_EQ(value(), "applied");

  edit_by_hand();
  children.apply(*api, owner, path, child);
  EXPECT_EQ(value(), "edited") << "the same content within the period is not written again";
  child["data"]["k"] = "changed";
  const auto changed_at = std::chrono::steady_clock::now();
  children.apply(*api, owner, path, child);
  EXPECT_EQ(value(), "changed") << "new content is written at once";

  edit_by_hand();
  ASSERT_TRUE(wait_until([&] {
    children.apply(*api, owner, path, child);
    return value() == "changed";
  }, 30s)) << "the edit outlived the resync period";
  EXPECT_GE(std::chrono::steady_clock::now() - changed_at, kPeriod) << "undone before the period passed";

  edit_by_hand();
  children.forget(owner);
  children.apply(*api, owner, path, child);
  EXPECT_EQ(value(), "changed") << "an owner forgotten has its children applied afresh";
}

TEST_F(OperatorTest, InvalidSpecIsRefusedByTheApiServerOrFailedWithTheFieldNamed) {
  start_operator("op-1");
  // The CRD's schema and CEL rules refuse what they can express, at kubectl apply.
  const std::string path = cluster->dir() + "/" + ns + "-bad.yaml";
  std::string yaml = small_run("r6");
  yaml.replace(yaml.find("rounds: 5"), 9, "rounds: 5\n  training: {localSteps: 0}");
  std::ofstream(path) << yaml;
  std::string out;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0);
  EXPECT_NE(out.find("spec.training.localSteps"), std::string::npos) << out;
  yaml = small_run("r6");
  yaml.replace(yaml.find("rounds: 5"), 9,
               "rounds: 5\n  training: {gradClipNorm: 1, privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}}");
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0);
  EXPECT_NE(out.find("gradClipNorm does not apply with training.privacy"), std::string::npos) << out;
  yaml = small_run("r6");
  yaml.replace(yaml.find("{synthetic: {task: a}}"), 22, "{synthetic: {task: a}, path: /data/a}");
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0);
  EXPECT_NE(out.find("set exactly one of path, volumeClaim, repoId or synthetic"), std::string::npos) << out;
  // Impossible aggregation settings: the field and the rule's minimum named.
  for (const auto& [strategy, message] : std::vector<std::pair<std::string, std::string>>{
           {"aggregation: {rule: bulyan, byzantine: 1}, ", "bulyan needs minFitClients >= 4 * byzantine + 3"},
           {"aggregation: {rule: krum}, ", "krum, multiKrum and bulyan need byzantine"},
           {"aggregation: {rule: trimmedMean, trimFraction: 0.2}, ", "trimFraction trims nothing at minFitClients"},
           {"clipping: {norm: 1, quantile: 0.5}, ", "set exactly one of norm or quantile"},
           {"serverOptimizer: {type: adam, momentum: 0.9}, ", "momentum only applies to avgm"},
           {"asynchronous: {}, aggregation: {rule: median}, ", "only mean applies to asynchronous rounds"},
           {"asynchronous: {}, maxRoundAttempts: 2, ", "maxRoundAttempts does not apply to asynchronous rounds"},
           // Privacy: settings that break its sensitivity argument or its guarantee.
           {"privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}, ", "every round releases what its sample"},
           {"privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 1.0e-5}, aggregation: {rule: median}, ", "only mean keeps privacy's sensitivity"},
           {"privacy: {clipNorm: 1, adaptiveClipping: {}, noiseMultiplier: 1, delta: 1.0e-5}, ", "set exactly one of clipNorm or adaptiveClipping"},
           {"privacy: {clipNorm: 1, noiseMultiplier: 1, delta: 0.5}, ", "privacy's delta must be below 1/n"},
           {"privacy: {clipNorm: 1, noiseMultiplier: -1, delta: 1.0e-5}, ", "spec.strategy.privacy.noiseMultiplier"}}) {
    yaml = small_run("r6");
    yaml.replace(yaml.find("strategy: {"), 11, "strategy: {" + strategy);
    std::ofstream(path) << yaml;
    EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0) << strategy;
    EXPECT_NE(out.find(message), std::string::npos) << out;
  }
  // A remote client is a name only: its owner brings the dataset.
  const std::string c2 = "{name: c2, dataset: {synthetic: {task: c}}}";
  yaml = small_run("r6");
  yaml.replace(yaml.find(c2), c2.size(), "{name: c2, remote: true, dataset: {synthetic: {task: c}}}");
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0) << yaml;
  EXPECT_NE(out.find("a remote client has only a name"), std::string::npos) << out;
  // FedBuff keeps its buffered updates against the latest checkpoint: one every version.
  yaml = small_run("r6");
  yaml.replace(yaml.find("strategy: {"), 11, "strategy: {asynchronous: {maxStaleness: 3}, ");
  yaml += "  checkpoints: {everyRounds: 2}\n";
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0) << yaml;
  EXPECT_NE(out.find("checkpoints.everyRounds must be 1 with strategy.asynchronous"), std::string::npos) << out;
  // Kept updates are for recomputing rounds, which privacy's noise and FedBuff's rebasing rule out.
  yaml = small_run("r6");
  yaml.replace(yaml.find("strategy: {"), 11, "strategy: {asynchronous: {}, ");
  yaml += "  checkpoints: {keepUpdates: true}\n";
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0) << yaml;
  EXPECT_NE(out.find("checkpoints.keepUpdates is for synchronous rounds without strategy.privacy"), std::string::npos) << out;
  // Evaluation sets replace the inline dataset; they are not added to it.
  yaml = small_run("r6");
  yaml.replace(yaml.find("evaluation: {dataset: {synthetic: {task: d}}}"), 45,
               "evaluation: {dataset: {synthetic: {task: d}}, sets: [{name: sponsor, dataset: {synthetic: {task: s}}}]}");
  std::ofstream(path) << yaml;
  EXPECT_NE(cluster->kubectl("-n " + ns + " apply -f " + path, &out), 0) << yaml;
  EXPECT_NE(out.find("name one dataset (evaluation.dataset) or several evaluation sets"), std::string::npos) << out;
  // The rest the operator finds with the same parser as `zk0 run`, and names the field.
  yaml = small_run("r6");
  yaml.replace(yaml.find("strategy: {"), 11, "strategy: {type: fedavg, proximalMu: 0.1, ");
  apply(yaml);
  ASSERT_TRUE(wait_until([&] { return run("r6")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  EXPECT_NE(run("r6")["status"]["message"].get<std::string>().find("spec.strategy.proximalMu: only applies to fedprox"), std::string::npos)
      << run("r6")["status"].dump();
  EXPECT_TRUE(wait_until([&] { return !events("InvalidSpec").empty(); }, 10s));
  EXPECT_FALSE(pod("r6-aggregator"));
  // Remote clients on a cluster need the CA that signs their certificates: without it the run
  // fails naming the field instead of waiting for an owner who cannot get a token.
  yaml = small_run("r6b");
  yaml.replace(yaml.find(c2), c2.size(), "{name: c2, remote: true}");
  yaml += "  transport: {tls: {mutual: true}}\n";
  apply(yaml);
  ASSERT_TRUE(wait_until([&] { return run("r6b")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  EXPECT_NE(run("r6b")["status"]["message"].get<std::string>().find("spec.transport.join.caSecret: required on a cluster for remote clients"),
            std::string::npos)
      << run("r6b")["status"].dump();
  EXPECT_FALSE(pod("r6b-aggregator"));
  EXPECT_FALSE(pod("r6b-worker-c0"));
}

TEST_F(OperatorTest, WatchesRecoverWhenTheApiServerRestarts) {
  const int metrics_port = free_port();
  Process& op = start_operator("op-1", {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)});
  apply(small_run("r7"));
  ASSERT_TRUE(wait_until([&] { return pod("r7-worker-c2").has_value(); }, 60s)) << logs();
  cluster->restart_apiserver();
  apply(small_run("r8"));
  ASSERT_TRUE(wait_until([&] { return pod("r8-worker-c2").has_value(); }, 90s)) << logs();
  EXPECT_TRUE(op.running());
  EXPECT_NE(op.log().find("event=watch_failed"), std::string::npos) << op.log();
  // The restarted server's watch cache begins after the versions the operator had seen, so its
  // re-watch gets 410 Gone and the informers relist: both recoveries happened.
  const std::string metrics = http_get(metrics_port, "/metrics");
  const auto counted = [&](const std::string& resource) {
    const std::string series = "zk0_operator_watch_restarts_total{reason=\"gone\",resource=\"" + resource + "\"} ";
    const auto at = metrics.find(series);
    return at == std::string::npos ? 0.0 : std::stod(metrics.substr(at + series.size()));
  };
  EXPECT_GE(counted("federationruns") + counted("pods"), 1.0) << metrics;
}

TEST_F(OperatorTest, OnlyTheLeaseHolderActsAndAStandbyTakesOver) {
  Process& first = start_operator("op-a");
  ASSERT_TRUE(wait_until([&] { return first.log().find("event=leader_elected") != std::string::npos; }, 30s)) << logs();
  Process& second = start_operator("op-b");
  apply(small_run("r9"));
  ASSERT_TRUE(wait_until([&] { return pod("r9-worker-c2").has_value(); }, 60s)) << logs();
  const json lease = api->get("/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases/zk0-operator");
  EXPECT_EQ(lease["spec"]["holderIdentity"], "op-a");
  EXPECT_EQ(second.log().find("event=leader_elected"), std::string::npos) << second.log();
  EXPECT_EQ(second.log().find("event=event "), std::string::npos) << "the standby must not act";
  // A graceful stop releases the Lease; the standby takes over well before it would expire.
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait(30s), 0) << first.log();
  ASSERT_TRUE(wait_until([&] { return second.log().find("event=leader_elected") != std::string::npos; }, 10s)) << logs();
  apply(small_run("r10"));
  ASSERT_TRUE(wait_until([&] { return pod("r10-worker-c2").has_value(); }, 60s)) << logs();
}

TEST_F(OperatorTest, WorksWithExactlyTheChartsPermissions) {
  const std::string kubeconfig = chart_rbac_kubeconfig();
  ASSERT_FALSE(kubeconfig.empty());
  // The default scope is the release namespace: nothing cluster-wide.
  for (const auto& b : api->get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")["items"])
    for (const auto& s : b.value("subjects", json::array()))
      EXPECT_NE(s.value("namespace", ""), ns) << "the chart bound a ClusterRole: " << b["metadata"]["name"];
  for (const char* secret : {"r11-aggregator-tls", "r11-c0-tls", "r11-c1-tls", "r11-c2-tls"}) create_tls_secret(secret);
  start_operator("op-rbac", {"--mutual-tls"}, kubeconfig);
  apply(small_run("r11"));
  ASSERT_TRUE(wait_until([&] { return pod("r11-worker-c2").has_value(); }, 60s)) << logs();
  set_pod_status("r11-aggregator", "Succeeded");
  ASSERT_TRUE(wait_until([&] { return run("r11")["status"].value("phase", "") == "Succeeded"; }, 30s)) << logs();
  // The operator writes the status first and its events after: wait for the event, do not race it.
  EXPECT_TRUE(wait_until([&] { return !events("Succeeded").empty(); }, 10s)) << logs();
  EXPECT_EQ(logs().find("Forbidden"), std::string::npos) << logs();
  // Its reach ends at the namespace: another namespace's Secrets (and pods) are out of reach.
  {
    const std::string other = ns.substr(0, 18) + "-other";
    ASSERT_EQ(cluster->kubectl("create namespace " + other), 0);
    ASSERT_EQ(cluster->kubectl("-n " + other + " create secret generic precious --from-literal=token=s3cret"), 0);
    kube::KubeClient as_operator(kube::KubeConfig::from_kubeconfig(kubeconfig));
    for (const std::string& path : {"/api/v1/namespaces/" + other + "/secrets/precious", "/api/v1/namespaces/" + other + "/secrets",
                                    "/api/v1/namespaces/" + other + "/pods"}) {
      try {
        as_operator.get(path);
        ADD_FAILURE() << "the operator's account read " << path;
      } catch (const kube::ApiError& e) {
        EXPECT_EQ(e.status(), 403) << path;
      }
    }
    cluster->kubectl("delete namespace " + other + " --wait=false");
  }
  // The operator itself asks only for metadata, never a Secret's data.
  EXPECT_EQ(logs().find("s3cret"), std::string::npos);
  // And without those permissions, a stranger cannot even read runs.
  const std::string stranger = cluster->kubeconfig_for("system:serviceaccount:" + ns + ":stranger");
  kube::KubeClient client(kube::KubeConfig::from_kubeconfig(stranger));
  try {
    client.get("/apis/zk0.io/v1alpha1/namespaces/" + ns + "/federationruns");
    ADD_FAILURE() << "a user without RBAC bindings read runs";
  } catch (const kube::ApiError& e) {
    EXPECT_EQ(e.status(), 403);
  }
}


// A real Prometheus (Debian's) scrapes a local federation run (`zk0 run`: aggregator and three
// workers) and the operator; then every PromQL expression of every dashboard panel runs through
// Prometheus's HTTP API and must return data. The only panels allowed to be empty are the GPU
// panels, which need NVIDIA's DCGM exporter on a GPU node.
TEST_F(OperatorTest, EveryDashboardQueryReturnsDataFromARealPrometheus) {
  const int operator_port = free_port();
  start_operator("op-1", {"--metrics-listen", "127.0.0.1:" + std::to_string(operator_port)});
  apply(small_run("r12"));
  const std::string dir = make_temp_dir("dashboards");
  const std::string out = dir + "/out";
  // int8 both ways, so that the compression panels have data, and contribution scores for theirs.
  const std::string spec = write_spec(dir, small_spec(out, 3, 10, {{"localSteps", "1500"}, {"minFitClients", "3"}, {"minAvailableClients", "3"},
                                                                    {"tls", "    compression: {codec: int8}\n"},
                                                                    {"evalEvery", "1\n    contributionScores: {firstOrder: true, leaveOneOut: true}"}}));
  Process run({bin("zk0"), "run", spec}, dir + "/zk0-run.log");
  const std::vector<std::string> components{"aggregator", "c0", "c1", "c2"};
  ASSERT_TRUE(wait_until([&] {
    for (const auto& c : components)
      if (!file_exists(out + "/logs/" + c + ".metrics-port")) return false;
    return true;
  }, 60s)) << run.log();
  std::string targets;
  for (const auto& c : components)
    targets += std::string(targets.empty() ? "" : ", ") + "'127.0.0.1:" + std::to_string(std::stoi(read_file(out + "/logs/" + c + ".metrics-port"))) + "'";
  const int prometheus_port = free_port();
  std::ofstream(dir + "/prometheus.yml") << "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
                                         << "  - job_name: zk0-run\n    static_configs: [{targets: [" << targets << "]}]\n"
                                         << "  - job_name: zk0-operator\n    static_configs: [{targets: ['127.0.0.1:" << operator_port << "']}]\n";
  Process prometheus({"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/tsdb",
                      "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                     dir + "/prometheus.log");
  // Wait until the run is well under way: rounds completed, every target scraped several times.
  ASSERT_TRUE(wait_until([&] {
    const json r = prometheus_query(prometheus_port, "min(zk0_aggregator_rounds_completed_total{run=\"test-run\"}) >= 2 and on() count(up == 1) == 5");
    return r.is_object() && !r["data"]["result"].empty();
  }, 120s)) << prometheus.log() << run.log();
  // Rates need several samples of every target.
  ASSERT_TRUE(wait_until([&] {
    const json r = prometheus_query(prometheus_port, "min(count_over_time(up[1m])) >= 4");
    return r.is_object() && !r["data"]["result"].empty();
  }, 30s)) << prometheus.log();

  std::vector<std::string> empty, failed;
  int with_data = 0;
  for (const auto& q : dashboard_queries("test-run")) {
    const json r = prometheus_query(prometheus_port, q.expr);
    if (!r.is_object() || r.value("status", "") != "success") {
      failed.push_back(q.dashboard + " / " + q.panel + ": " + q.expr + " -> " + (r.is_object() ? r.dump() : "no answer"));
      continue;
    }
    const bool gpu = needs_gpu(q);
    const bool has_data = !r["data"]["result"].empty();
    if (has_data) ++with_data;
    if (!has_data && !gpu) empty.push_back(q.dashboard + " / " + q.panel + ": " + q.expr);
    if (has_data && gpu) ADD_FAILURE() << "a DCGM panel returned data on a machine without GPUs: " << q.expr;
  }
  EXPECT_TRUE(failed.empty()) << "queries Prometheus refused:\n" << [&] { std::string s; for (auto& f : failed) s += f + "\n"; return s; }();
  EXPECT_TRUE(empty.empty()) << "queries without data:\n" << [&] { std::string s; for (auto& e : empty) s += e + "\n"; return s; }();
  EXPECT_GT(with_data, 40);
  // Prometheus's linter accepts the operator's exposition (the aggregator's and workers' are
  // checked in federation_test).
  std::ofstream(dir + "/operator.prom") << http_get(operator_port, "/metrics");
  int lint = 0;
  const std::string lint_out = run_command("promtool check metrics < " + dir + "/operator.prom", &lint);
  EXPECT_EQ(lint, 0) << lint_out;

  // The run's outputs and `zk0 run`'s progress show the numbers the metrics carry.
  EXPECT_EQ(run.wait(300s), 0) << run.log();
  const json history = read_json(out + "/federated_metrics.json")["rounds"];
  std::vector<double> losses;
  for (const auto& r : history)
    if (r.contains("server_eval_loss") && !r["server_eval_loss"].is_null()) losses.push_back(r["server_eval_loss"].get<double>());
  const auto is_round_loss = [&](double v, double tolerance) {
    for (double l : losses)
      if (std::abs(l - v) <= tolerance * std::abs(l)) return true;
    return false;
  };
  const json samples = prometheus_query(prometheus_port, "zk0_aggregator_server_eval_loss{run=\"test-run\"}[10m]");
  ASSERT_FALSE(samples["data"]["result"].empty()) << samples.dump();
  std::set<double> seen;
  for (const auto& v : samples["data"]["result"][0]["values"]) seen.insert(std::stod(v[1].get<std::string>()));
  EXPECT_GE(seen.size(), 2u);
  for (double v : seen) EXPECT_TRUE(is_round_loss(v, 1e-12)) << "the metric showed a loss no round has: " << v;
  const json completed = prometheus_query(prometheus_port, "max_over_time(zk0_aggregator_rounds_completed_total{run=\"test-run\"}[10m])");
  EXPECT_LE(std::stod(completed["data"]["result"][0]["value"][1].get<std::string>()), static_cast<double>(history.size() - 1));
  int progress_losses = 0;
  std::istringstream lines(run.log());
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("server_loss=");
    if (at == std::string::npos) continue;
    ++progress_losses;
    EXPECT_TRUE(is_round_loss(std::stod(line.substr(at + 12)), 1e-5)) << line;
  }
  EXPECT_GT(progress_losses, 0) << run.log();
}

TEST_F(OperatorTest, ActiveDeadlineFailsTheRunAndTtlDeletesItAfterwards) {
  start_operator("op-1");
  apply(small_run("r13", "{activeDeadlineSeconds: 3, ttlSecondsAfterFinished: 2}"));
  ASSERT_TRUE(wait_until([&] { return pod("r13-worker-c2").has_value(); }, 60s)) << logs();
  set_pod_status("r13-aggregator", "Running");
  ASSERT_TRUE(wait_until([&] { return run("r13")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
  std::string reason;
  EXPECT_EQ(condition(run("r13"), "Failed", &reason), "True");
  EXPECT_EQ(reason, "DeadlineExceeded");
  EXPECT_TRUE(wait_until([&] { return !pod("r13-aggregator") && !pod("r13-worker-c0"); }, 30s)) << "running pods go at the deadline";
  // Two seconds after it ended the run is deleted, and its children with it.
  EXPECT_TRUE(wait_until([&] { return !get("/apis/zk0.io/v1alpha1/namespaces/" + ns + "/federationruns/r13"); }, 30s)) << logs();
  EXPECT_TRUE(wait_until([&] { return !get("/api/v1/namespaces/" + ns + "/configmaps/r13-spec"); }, 60s));
}

// Remote clients on a cluster, under the chart's permissions: no pod for them; the run waits for
// the join CA's Secret and refuses one that is not the CA the aggregator's certificate chains to;
// then a Service outside the cluster (NodePort), a gRPC rule open to any source, the aggregator
// mounting the join CA's key and the token key, one valid single-use token per remote client in
// <run>-join-tokens (a tampered one replaced), and the status saying where to join and who has.
TEST_F(OperatorTest, RemoteClientsGetJoinTokensAnEndpointOutsideAndNoPod) {
  const std::string kubeconfig = chart_rbac_kubeconfig();
  ASSERT_FALSE(kubeconfig.empty());
  start_operator("op-remote", {}, kubeconfig);
  const std::string name = "rr";
  const std::string run_yaml = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: " + name + "}\nspec:\n  rounds: 3\n"
                               "  clients:\n    - {name: c0, dataset: {synthetic: {task: a}}}\n"
                               "    - {name: owner-b, remote: true}\n    - {name: owner-c, remote: true}\n"
                               "  evaluation: {dataset: {synthetic: {task: d}}}\n"
                               "  strategy: {minFitClients: 2, minAvailableClients: 3}\n"
                               "  transport:\n    tls: {mutual: true}\n    join: {caSecret: zk0-ca, tokenTtlSeconds: 600}\n"
                               "    expose: {type: NodePort, nodePort: 30551}\n";
  // Without a join CA the operator has nothing to sign with: refused, naming the field.
  {
    std::string without = run_yaml;
    without.replace(without.find("metadata: {name: rr}"), 20, "metadata: {name: rn}");
    without.replace(without.find("caSecret: zk0-ca, "), 18, "");
    apply(without);
    ASSERT_TRUE(wait_until([&] { return run("rn")["status"].value("phase", "") == "Failed"; }, 30s)) << logs();
    EXPECT_NE(run("rn")["status"].value("message", "").find("spec.transport.join.caSecret: required on a cluster"), std::string::npos)
        << run("rn")["status"].dump(2);
  }
  const Certificates certs = generate_certificates(make_temp_dir("tls-" + ns), name, {"c0"});
  kubectl("create secret generic rr-aggregator-tls --from-file=ca.crt=" + certs.ca + " --from-file=tls.crt=" + certs.server_cert +
          " --from-file=tls.key=" + certs.server_key);
  kubectl("create secret generic rr-c0-tls --from-file=ca.crt=" + certs.ca + " --from-file=tls.crt=" + certs.client_cert("c0") +
          " --from-file=tls.key=" + certs.client_key("c0"));
  apply(run_yaml);
  std::string reason;
  ASSERT_TRUE(wait_until([&] { return condition(run(name), "Ready", &reason) == "False" && reason == "SecretMissing"; }, 30s)) << logs();
  EXPECT_NE(run(name)["status"].dump().find("zk0-ca"), std::string::npos) << run(name)["status"].dump(2);
  // A CA that did not sign the aggregator's certificate: owners would get certificates nobody trusts.
  kubectl("create secret tls zk0-ca --cert=" + certs.dir + "/rogue-ca.pem --key=" + certs.dir + "/rogue-ca.key");
  ASSERT_TRUE(wait_until([&] { return condition(run(name), "Ready", &reason) == "False" && reason == "JoinCaMismatch"; }, 30s)) << logs();
  EXPECT_FALSE(pod(name + "-aggregator"));
  kubectl("delete secret zk0-ca");
  kubectl("create secret tls zk0-ca --cert=" + certs.ca + " --key=" + certs.dir + "/ca.key");
  ASSERT_TRUE(wait_until([&] { return pod(name + "-worker-c0").has_value(); }, 60s)) << logs();
  EXPECT_FALSE(pod(name + "-worker-owner-b"));
  EXPECT_FALSE(pod(name + "-worker-owner-c"));

  // One token per remote client, signed with the run's token key, pinning the aggregator's CA and
  // naming its certificate's name.
  const auto secret_text = [&](const std::string& secret, const std::string& key) -> std::string {
    const auto s = get("/api/v1/namespaces/" + ns + "/secrets/" + secret);
    if (!s || !(*s)["data"].contains(key)) return "";
    std::string out;
    const std::string b64 = (*s)["data"][key];
    std::ofstream(cluster->dir() + "/b64") << b64;
    out = run_command("base64 -d " + cluster->dir() + "/b64");
    return out;
  };
  ASSERT_TRUE(wait_until([&] { return !secret_text("rr-join-tokens", "owner-c").empty(); }, 30s)) << logs();
  const std::string token_key = secret_text("rr-join", "token.key");
  ASSERT_EQ(token_key.size(), 64u);
  const std::string ca_sha256 = parse_certificate(read_file(certs.ca)).fingerprint_sha256;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::set<std::string> nonces;
  for (const std::string client : {"owner-b", "owner-c"}) {
    const JoinToken t = verify_join_token(secret_text("rr-join-tokens", client), token_key, now);
    EXPECT_EQ(t.run, name);
    EXPECT_EQ(t.client, client);
    EXPECT_EQ(t.ca_sha256, ca_sha256);
    EXPECT_EQ(t.server_name, "rr-aggregator." + ns + ".svc");
    EXPECT_NEAR(static_cast<double>(t.expires_unix - now), 600.0, 30.0);
    nonces.insert(t.nonce);
  }
  EXPECT_EQ(nonces.size(), 2u);
  EXPECT_FALSE(get("/api/v1/namespaces/" + ns + "/secrets/rr-join-tokens")->at("data").contains("c0"));

  // The aggregator alone holds the join CA's key and the token key; the spec it reads names them.
  const json agg = *pod(name + "-aggregator");
  const std::string volumes = agg["spec"]["volumes"].dump();
  EXPECT_NE(volumes.find(R"({"name":"join-ca","secret":{"defaultMode":288,"items":[{"key":"tls.key","path":"tls.key"}],"secretName":"zk0-ca"}})"),
            std::string::npos) << volumes;
  EXPECT_NE(volumes.find(R"("secretName":"rr-join")"), std::string::npos) << volumes;
  EXPECT_EQ((*pod(name + "-worker-c0"))["spec"]["volumes"].dump().find("join"), std::string::npos);
  const FederationSpec in_pod = parse_spec((*get("/api/v1/namespaces/" + ns + "/configmaps/rr-spec"))["data"]["run.yaml"].get<std::string>());
  EXPECT_EQ(in_pod.transport.join.ca_key_file, "/etc/zk0/join-ca/tls.key");
  EXPECT_EQ(in_pod.transport.join.token_key_file, "/etc/zk0/join/token.key");
  EXPECT_TRUE(in_pod.clients[1].remote);
  EXPECT_EQ(in_pod.clients[1].tls.cert_file, "");
  // Reachable from outside on gRPC only; the NetworkPolicy admits gRPC from any source.
  const json remote = *get("/api/v1/namespaces/" + ns + "/services/rr-aggregator-remote");
  EXPECT_EQ(remote["spec"]["type"], "NodePort");
  ASSERT_EQ(remote["spec"]["ports"].size(), 1u);
  EXPECT_EQ(remote["spec"]["ports"][0]["nodePort"], 30551);
  EXPECT_EQ(remote["spec"]["ports"][0]["port"], 50051);
  const json policy = *get("/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/rr-aggregator");
  EXPECT_FALSE(policy["spec"]["ingress"][0].contains("from")) << policy.dump(2);
  EXPECT_EQ(policy["spec"]["ingress"][0]["ports"][0]["port"], 50051);

  // The status: where to join (the node the aggregator runs on), and each remote client's state.
  set_pod_status(name + "-aggregator", "Running");
  set_pod_status(name + "-worker-c0", "Running");
  ASSERT_TRUE(wait_until([&] { return run(name)["status"].value("joinEndpoint", "") == "10.0.0.7:30551"; }, 30s))
      << run(name)["status"].dump(2) << logs();
  json st = run(name)["status"];
  EXPECT_EQ(st.value("joinTokensSecret", ""), "rr-join-tokens");
  EXPECT_EQ(st["clients"][1].value("state", ""), "Joining") << st.dump(2);
  EXPECT_TRUE(st["clients"][1].value("remote", false));
  EXPECT_FALSE(st["clients"][1].value("tokenExpiresAt", "").empty()) << st.dump(2);
  EXPECT_EQ(table_column(kubectl("get fedrun " + name + " -o wide"), "JOIN ENDPOINT"), "10.0.0.7:30551");

  // A token tampered with in the Secret is replaced by a valid one.
  kubectl("patch secret rr-join-tokens --type merge -p '{\"stringData\":{\"owner-c\":\"zk0j1.e30.00\"}}'");
  ASSERT_TRUE(wait_until([&] {
    try {
      return verify_join_token(secret_text("rr-join-tokens", "owner-c"), token_key, now).client == "owner-c";
    } catch (const std::exception&) {
      return false;
    }
  }, 30s)) << logs();

  // owner-b joins (the aggregator reports it): joined, last seen, its spent token gone.
  {
    std::lock_guard<std::mutex> lock(status_mu);
    aggregator_status["ready_clients"] = 2;
    aggregator_status["clients"] = {{"c0", {{"state", "idle"}, {"last_seen_unix", now}}},
                                    {"owner-b", {{"state", "training"}, {"last_seen_unix", now}, {"last_loss", 0.5}, {"remote", true}}},
                                    {"owner-c", {{"state", "not_joined"}, {"remote", true}}}};
  }
  ASSERT_TRUE(wait_until([&] { return run(name)["status"]["clients"][1].value("joined", false); }, 30s)) << logs();
  st = run(name)["status"];
  EXPECT_EQ(st["clients"][1].value("state", ""), "Joined");
  EXPECT_EQ(st["clients"][1].value("aggregatorState", ""), "training");
  EXPECT_EQ(st["clients"][1].value("lastSeen", ""), kube::rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(now))));
  EXPECT_FALSE(st["clients"][2].value("joined", false));
  EXPECT_EQ(st["clients"][2].value("state", ""), "Joining");
  ASSERT_TRUE(wait_until([&] { return !events("ClientJoined").empty(); }, 10s)) << logs();
  ASSERT_TRUE(wait_until([&] { return secret_text("rr-join-tokens", "owner-b").empty(); }, 30s)) << logs();
  EXPECT_FALSE(secret_text("rr-join-tokens", "owner-c").empty());

  // Behind a load balancer: the endpoint is the balancer's address once its controller has one
  // (the test plays that controller), with the gRPC port.
  {
    std::string balanced = run_yaml;
    balanced.replace(balanced.find("metadata: {name: rr}"), 20, "metadata: {name: rl}");
    balanced.replace(balanced.find("expose: {type: NodePort, nodePort: 30551}"), 41, "expose: {type: LoadBalancer}");
    kubectl("create secret generic rl-aggregator-tls --from-file=ca.crt=" + certs.ca + " --from-file=tls.crt=" + certs.server_cert +
            " --from-file=tls.key=" + certs.server_key);
    kubectl("create secret generic rl-c0-tls --from-file=ca.crt=" + certs.ca + " --from-file=tls.crt=" + certs.client_cert("c0") +
            " --from-file=tls.key=" + certs.client_key("c0"));
    apply(balanced);
    ASSERT_TRUE(wait_until([&] { return get("/api/v1/namespaces/" + ns + "/services/rl-aggregator-remote").has_value(); }, 30s)) << logs();
    EXPECT_EQ((*get("/api/v1/namespaces/" + ns + "/services/rl-aggregator-remote"))["spec"]["type"], "LoadBalancer");
    ASSERT_TRUE(wait_until([&] { return pod("rl-aggregator").has_value(); }, 30s)) << logs();
    set_pod_status("rl-aggregator", "Running");
    api->patch("/api/v1/namespaces/" + ns + "/services/rl-aggregator-remote/status",
               {{"status", {{"loadBalancer", {{"ingress", json::array({{{"hostname", "robots.example.org"}}})}}}}}}, kube::PatchType::Merge);
    ASSERT_TRUE(wait_until([&] { return run("rl")["status"].value("joinEndpoint", "") == "robots.example.org:50051"; }, 30s))
        << run("rl")["status"].dump(2) << logs();
  }
  EXPECT_EQ(logs().find("event=reconcile_failed"), std::string::npos) << "the chart's permissions fall short:\n" << logs();
}

// A robot owner's cluster in a run hosted elsewhere, under the chart's permissions: the
// membership waits for its token's Secret (a malformed token is named) and its dataset claim,
// then runs one restricted worker pod that joins with the token from the mounted Secret (never on
// its command line) and keeps its certificate on a claim of its own; the status names the run and
// client the token is for and brings back what the worker reports; a failed pod is replaced, and
// one that exits 2 (a refused join) fails the membership without a retry.
TEST_F(OperatorTest, AMembershipRunsAJoiningWorkerNextToTheOwnersData) {
  const std::string kubeconfig = chart_rbac_kubeconfig();
  ASSERT_FALSE(kubeconfig.empty());
  start_operator("op-member", {"--worker-metrics-port", std::to_string(aggregator->port())}, kubeconfig);
  apply("apiVersion: zk0.io/v1alpha1\nkind: FederationMembership\nmetadata: {name: alice}\nspec:\n"
        "  endpoint: 203.0.113.7:30551\n  tokenSecret: {name: alice-token}\n"
        "  dataset: {volumeClaim: {claimName: alice-data, subPath: so101}}\n"
        "  resources: {gpu: 1, cpu: 4, memory: 16Gi}\n  pod: {nodeSelector: {zk0.io/robot-owner: alice}}\n");
  const auto membership = [&] {
    json m = api->get("/apis/zk0.io/v1alpha1/namespaces/" + ns + "/federationmemberships/alice");
    if (!m.contains("status") || !m["status"].is_object()) m["status"] = json::object();
    return m;
  };
  std::string reason;
  ASSERT_TRUE(wait_until([&] { return condition(membership(), "Ready", &reason) == "False" && reason == "SecretMissing"; }, 30s)) << logs();
  EXPECT_NE(membership()["status"].value("message", "").find("alice-token"), std::string::npos);
  kubectl("create secret generic alice-token --from-literal=token=zk0j1.not-a-token");
  ASSERT_TRUE(wait_until([&] { return condition(membership(), "Ready", &reason) == "False" && reason == "TokenInvalid"; }, 30s)) << logs();
  JoinToken claims;
  claims.run = "so100";
  claims.client = "alice-so101";
  claims.expires_unix = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() + 3600;
  claims.ca_sha256 = std::string(64, 'a');
  claims.server_name = "so100-aggregator.zk0.svc";
  const std::string token = mint_join_token(claims, new_join_token_key());
  kubectl("delete secret alice-token");
  kubectl("create secret generic alice-token --from-literal=token=" + token);
  ASSERT_TRUE(wait_until([&] { return condition(membership(), "Ready", &reason) == "False" && reason == "ClaimMissing"; }, 30s)) << logs();
  EXPECT_FALSE(pod("alice-worker"));
  api->create("/api/v1/namespaces/" + ns + "/persistentvolumeclaims",
              {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"}, {"metadata", {{"name", "alice-data"}}},
               {"spec", {{"accessModes", {"ReadOnlyMany"}}, {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}});
  ASSERT_TRUE(wait_until([&] { return pod("alice-worker").has_value(); }, 30s)) << logs();

  // The pod: the worker image joining with the mounted token, its data read-only, its state on
  // its own claim, its GPU and placement, restricted, owned by the membership.
  const json p = *pod("alice-worker");
  const json& c = p["spec"]["containers"][0];
  EXPECT_EQ(c["image"], "zk0/worker:test");
  EXPECT_EQ(c["args"], json::array({"join", "--endpoint", "203.0.113.7:30551", "--token-file", "/etc/zk0/join-token/token", "--dataset",
                                    "/data/dataset", "--state-dir", "/var/lib/zk0/state", "--device", "cuda", "--metrics-listen",
                                    "0.0.0.0:" + std::to_string(aggregator->port()), "--termination-log", "/dev/termination-log"}));
  EXPECT_EQ(p.dump().find(token), std::string::npos) << "the token is in no field of the pod";
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], "1");
  EXPECT_EQ(p["spec"]["nodeSelector"]["zk0.io/robot-owner"], "alice");
  EXPECT_TRUE(c["securityContext"]["readOnlyRootFilesystem"].get<bool>());
  EXPECT_FALSE(p["spec"]["automountServiceAccountToken"].get<bool>());
  EXPECT_EQ(p["metadata"]["ownerReferences"][0]["kind"], "FederationMembership");
  const std::string volumes = p["spec"]["volumes"].dump(), mounts = c["volumeMounts"].dump();
  EXPECT_NE(volumes.find(R"("secret":{"defaultMode":288,"items":[{"key":"token","path":"token"}],"secretName":"alice-token"})"), std::string::npos)
      << volumes;
  EXPECT_NE(volumes.find(R"({"claimName":"alice-data","readOnly":true})"), std::string::npos) << volumes;
  EXPECT_NE(volumes.find(R"({"claimName":"alice-state"})"), std::string::npos) << volumes;
  EXPECT_NE(mounts.find(R"("subPath":"so101")"), std::string::npos) << mounts;
  const json state = *get("/api/v1/namespaces/" + ns + "/persistentvolumeclaims/alice-state");
  EXPECT_EQ(state["metadata"]["ownerReferences"][0]["name"], "alice");
  const json policy = *get("/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies/alice-worker");
  EXPECT_EQ(policy["spec"]["ingress"].size(), 1u);
  EXPECT_EQ(policy["spec"]["ingress"][0]["ports"][0]["port"], aggregator->port());
  json st = membership()["status"];
  EXPECT_EQ(st.value("run", ""), "so100");
  EXPECT_EQ(st.value("client", ""), "alice-so101");
  {
    const std::string objects = cluster->dir() + "/" + ns + "-membership.json";
    std::string out;
    ASSERT_EQ(cluster->kubectl("-n " + ns + " get pods,persistentvolumeclaims,networkpolicies -l zk0.io/membership=alice -o json", &out), 0);
    std::ofstream(objects) << out;
    int code = 0;
    const std::string report = run_command(std::string(ZK0_SOURCE_DIR) + "/.venv/bin/python " + ZK0_SOURCE_DIR +
                                               "/tests/kube/validate_manifests.py " + objects, &code);
    EXPECT_EQ(code, 0) << report;
    EXPECT_NE(report.find("checked 3 manifests, 0 problems"), std::string::npos) << report;
  }

  // Joining, then running: what the worker reports comes into the status and kubectl's columns.
  set_pod_status("alice-worker", "Running");
  ASSERT_TRUE(wait_until([&] { return membership()["status"].value("phase", "") == "Joining"; }, 30s)) << logs();
  {
    std::lock_guard<std::mutex> lock(status_mu);
    aggregator_status = {{"run", "so100"},          {"client", "alice-so101"}, {"rounds", 30},           {"state", "training"},
                         {"round", 3},              {"rounds_trained", 3},     {"updates_uploaded", 3}, {"samples_trained", 1920},
                         {"last_loss", 0.42}};
  }
  ASSERT_TRUE(wait_until([&] { return membership()["status"].value("phase", "") == "Running"; }, 30s)) << logs();
  st = membership()["status"];
  EXPECT_EQ(st.value("round", 0), 3);
  EXPECT_EQ(st.value("rounds", 0), 30);
  EXPECT_EQ(st.value("updatesUploaded", 0), 3);
  EXPECT_EQ(st.value("samplesTrained", 0), 1920);
  EXPECT_DOUBLE_EQ(st.value("lastLoss", 0.0), 0.42);
  EXPECT_EQ(condition(membership(), "Ready"), "True");
  const std::string table = kubectl("get fedmember alice");
  EXPECT_EQ(table_column(table, "CLIENT"), "alice-so101") << table;
  EXPECT_EQ(table_column(table, "UPDATES"), "3") << table;
  ASSERT_TRUE(wait_until([&] { return !events("Joined").empty(); }, 10s)) << logs();

  // A worker that fails is replaced; the next one finishes with the run, and what it delivered,
  // its termination message, stays in the status.
  const std::string first = uid_of("alice-worker");
  set_pod_status("alice-worker", "Failed", 1);
  ASSERT_TRUE(wait_until([&] { return pod("alice-worker") && uid_of("alice-worker") != first; }, 30s)) << logs();
  EXPECT_EQ(membership()["status"].value("attempts", 0), 2);
  EXPECT_EQ(membership()["status"].value("failures", 0), 1);
  set_pod_status("alice-worker", "Succeeded", 0, 0,
                 R"({"run":"so100","client":"alice-so101","rounds":30,"state":"idle","round":30,"rounds_trained":29,)"
                 R"("updates_uploaded":29,"samples_trained":18560,"last_loss":0.125})");
  ASSERT_TRUE(wait_until([&] { return membership()["status"].value("phase", "") == "Succeeded"; }, 30s)) << logs();
  st = membership()["status"];
  EXPECT_EQ(st.value("round", 0), 30);
  EXPECT_EQ(st.value("updatesUploaded", 0), 29);
  EXPECT_DOUBLE_EQ(st.value("lastLoss", 0.0), 0.125);

  // A worker the aggregator refused (exit 2: a spent token) fails its membership, not retried,
  // with the worker's last words.
  apply("apiVersion: zk0.io/v1alpha1\nkind: FederationMembership\nmetadata: {name: bob}\nspec:\n"
        "  endpoint: 203.0.113.7:30551\n  tokenSecret: {name: alice-token}\n  dataset: {volumeClaim: {claimName: alice-data}}\n");
  ASSERT_TRUE(wait_until([&] { return pod("bob-worker").has_value(); }, 30s)) << logs();
  set_pod_status("bob-worker", "Failed", 2, 0, "zk0 join: the aggregator refused to join: join token for client 'alice-so101' was already used");
  const auto bob = [&] { return api->get("/apis/zk0.io/v1alpha1/namespaces/" + ns + "/federationmemberships/bob").value("status", json::object()); };
  ASSERT_TRUE(wait_until([&] { return bob().value("phase", "") == "Failed"; }, 30s)) << logs();
  EXPECT_NE(bob().value("message", "").find("already used; not retried"), std::string::npos) << bob().dump(2);
  EXPECT_EQ(bob().value("attempts", 0), 1);
  EXPECT_TRUE(pod("bob-worker").has_value()) << "the failed pod stays for its logs";
  EXPECT_EQ(logs().find("event=reconcile_failed"), std::string::npos) << logs();
}
