// zk0-operator-bench [--smoke]: the operator on a real kube-apiserver (tests/support/kube_cluster).
//   apply latency: `kubectl apply` of one FederationRun (10 clients) until all its children exist,
//                  against `kubectl apply --server-side` of those same children directly (the
//                  baseline, which also warms the API server's server-side apply);
//   throughput:    100 FederationRuns of 10 clients created at once until every child exists,
//                  in objects per second, against one client creating the same objects itself;
//   memory:        the operator's peak resident memory.
#include <signal.h>

#include <fstream>
#include <iomanip>
#include <iostream>

#include "core/spec/federation_spec.h"
#include "core/util/fs.h"
#include "core/util/yaml_json.h"
#include "operator/children.h"
#include "operator/kube/client.h"
#include "support/kube_cluster.h"

using namespace zk0;
using namespace zk0::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string run_yaml(const std::string& name, int clients) {
  std::string s = "apiVersion: zk0.io/v1alpha1\nkind: FederationRun\nmetadata: {name: " + name + "}\nspec:\n  rounds: 30\n  clients:\n";
  for (int c = 0; c < clients; ++c)
    s += "    - {name: c" + std::to_string(c) + ", dataset: {path: /srv/data/c" + std::to_string(c) + "}, resources: {gpu: 1}}\n";
  return s + "  evaluation: {dataset: {path: /srv/data/eval}}\n  strategy: {minFitClients: 2, minAvailableClients: 2}\n";
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t pods_in(kube::KubeClient& api, const std::string& ns) {
  return api.get("/api/v1/namespaces/" + ns + "/pods?labelSelector=" + kube::query_escape("app.kubernetes.io/managed-by=zk0-operator"))["items"].size();
}

std::string peak_rss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return line.substr(6);
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && std::string(argv[1]) == "--smoke";
  const int runs = smoke ? 3 : 100, clients = smoke ? 3 : 10;
  KubeCluster cluster("operator-bench", {std::string(ZK0_SOURCE_DIR) + "/crds/zk0.io_federationruns.yaml"});
  std::string out;
  for (const char* ns : {"bench", "baseline"}) cluster.kubectl(std::string("create namespace ") + ns);
  kube::KubeClient api(kube::KubeConfig::from_kubeconfig(cluster.admin_kubeconfig()));
  op::OperatorSettings settings;
  settings.host_path_prefixes = {"/srv/data"};  // the runs' datasets are hostPath volumes under it

  // The same children built by the operator's own functions, for the baselines.
  const auto children = [&](const std::string& ns, const std::string& name) {
    const FederationSpec spec = parse_spec(run_yaml(name, clients));
    const json run = {{"metadata", {{"name", name}, {"namespace", ns}, {"uid", "00000000-0000-0000-0000-000000000000"}}}};
    std::vector<json> objects{op::spec_config_map(run, spec, settings), op::checkpoint_claim(run, spec),
                              op::aggregator_service(run, settings), op::aggregator_network_policy(run, spec, settings),
                              op::aggregator_pod(run, spec, settings, 1)};
    for (const auto& c : spec.clients) objects.push_back(op::worker_pod(run, spec, c, settings, 1));
    for (auto& o : objects) o["metadata"].erase("ownerReferences");  // no owner exists in the baseline
    return objects;
  };
  const auto collection = [](const json& o) {
    const std::string kind = o["kind"], ns = o["metadata"]["namespace"];
    if (kind == "NetworkPolicy") return "/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies";
    const std::string plural = kind == "ConfigMap" ? "configmaps" : kind == "Service" ? "services" : kind == "Pod" ? "pods" : "persistentvolumeclaims";
    return "/api/v1/namespaces/" + ns + "/" + plural;
  };

  // Baseline 1: kubectl apply (server-side, as the operator applies) of one run's children.
  {
    std::ofstream f(cluster.dir() + "/children.json");
    f << json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", children("baseline", "direct")}}.dump();
  }
  auto t0 = Clock::now();
  cluster.kubectl("apply --server-side -f " + cluster.dir() + "/children.json", &out);
  const double direct_apply = seconds_since(t0);

  // Baseline 2: one client creating every object of `runs` runs, one request at a time.
  t0 = Clock::now();
  size_t baseline_objects = 0;
  for (int r = 0; r < runs; ++r)
    for (const auto& o : children("baseline", "b" + std::to_string(r))) {
      api.create(collection(o), o);
      ++baseline_objects;
    }
  const double baseline_seconds = seconds_since(t0);

  Process op({bin("zk0-operator"), "--kubeconfig", cluster.admin_kubeconfig(), "--watch-namespace", "bench", "--leader-election-namespace",
              "bench", "--metrics-listen", "127.0.0.1:0",
              "--allow-host-path-prefix", "/srv/data"},
             cluster.dir() + "/operator.log");
  const auto fail = [&](const std::string& what) {
    op.signal(SIGTERM);
    op.wait(std::chrono::seconds(30));
    std::cerr << what << ":\n" << op.log().substr(0, 4000);
    return 1;
  };
  if (!wait_until([&] { return op.log().find("event=leader_elected") != std::string::npos; }, std::chrono::seconds(30)))
    return fail("the operator was not elected leader within 30 s");

  // One run first, not timed: right after the watches start, the API server's watch cache for
  // runs may still be catching up with the newest resource version (seconds on a fresh server).
  const size_t per_run = static_cast<size_t>(clients) + 1;
  std::ofstream(cluster.dir() + "/warmup.yaml") << run_yaml("warmup", clients);
  cluster.kubectl("-n bench apply -f " + cluster.dir() + "/warmup.yaml", &out);
  if (!wait_until([&] { return pods_in(api, "bench") >= per_run; }, std::chrono::seconds(60)))
    return fail("the operator did not create the warm-up run's pods within 60 s");

  // Apply latency through the operator.
  std::ofstream(cluster.dir() + "/run.yaml") << run_yaml("latency", clients);
  t0 = Clock::now();
  cluster.kubectl("-n bench apply -f " + cluster.dir() + "/run.yaml", &out);
  if (!wait_until([&] { return pods_in(api, "bench") >= 2 * per_run; }, std::chrono::seconds(60)))
    return fail("the operator did not create the timed run's pods within 60 s");
  const double operator_apply = seconds_since(t0);

  // Throughput: every run at once.
  t0 = Clock::now();
  for (int r = 0; r < runs; ++r)
    api.create("/apis/zk0.io/v1alpha1/namespaces/bench/federationruns", yaml_to_json(YAML::Load(run_yaml("t" + std::to_string(r), clients))));
  const size_t all_pods = per_run * static_cast<size_t>(runs + 2);
  const bool done = wait_until([&] { return pods_in(api, "bench") >= all_pods; }, std::chrono::minutes(10));
  const double operator_seconds = seconds_since(t0);
  const size_t operator_objects = (per_run + 4) * static_cast<size_t>(runs);  // pods + ConfigMap, PVC, Service, NetworkPolicy
  const std::string memory = peak_rss(op.pid());
  if (!done) return fail("the operator did not create every child within 10 minutes");
  op.signal(SIGTERM);
  op.wait(std::chrono::seconds(30));
  std::cout << std::fixed << std::setprecision(2);
  std::cout << "operator apply -> children (1 run, " << clients << " clients): " << operator_apply * 1000 << " ms; kubectl apply --server-side of the same "
            << per_run + 4 << " objects: " << direct_apply * 1000 << " ms; ratio " << operator_apply / direct_apply << "\n";
  const double operator_rate = operator_objects / operator_seconds, baseline_rate = baseline_objects / baseline_seconds;
  std::cout << "operator throughput (" << runs << " runs x " << clients << " clients, " << operator_objects << " objects): "
            << operator_rate << " objects/s, " << runs / operator_seconds << " runs/s; one client creating the same objects: "
            << baseline_rate << " objects/s; ratio " << operator_rate / baseline_rate << "\n";
  std::cout << "operator peak memory:" << memory << "\n";
  return 0;
}
