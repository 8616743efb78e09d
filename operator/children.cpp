#include "operator/children.h"

#include <cmath>
#include <set>
#include <sstream>

#include "core/security/random.h"
#include "core/transport/health_services.h"


namespace zk0::op {

namespace {

using json = nlohmann::json;

const char* kSpecMount = "/etc/zk0/spec";
const char* kTlsMount = "/etc/zk0/tls";
const char* kCheckpointKeyMount = "/etc/zk0/checkpoint-key";
const char* kJoinCaMount = "/etc/zk0/join-ca";
const char* kJoinKeyMount = "/etc/zk0/join";
const char* kHubTokenMount = "/var/run/secrets/zk0/hub-token";
const char* kOutputMount = "/var/lib/zk0";
const char* kHubHome = "/var/cache/huggingface";

std::string client_mount(const std::string& client) { return "/data/clients/" + client; }
std::string evaluation_mount(const std::string& set) { return "/data/evaluation/" + set; }
// Bounds on the pods' scratch space: a runaway write fills its own volume, not the node's disk.
const char* kTmpSize = "1Gi";
const char* kHubCacheSize = "200Gi";  // a Hub dataset with its videos, the policy and backbone files

std::string run_name(const json& run) { return run.at("metadata").at("name").get<std::string>(); }
std::string run_namespace(const json& run) { return run.at("metadata").value("namespace", "default"); }

json child_labels(const json& run, const std::string& component) {
  return {{labels::kRun, run_name(run)},
          {labels::kComponent, component},
          {labels::kManagedBy, labels::kManager},
          {"app.kubernetes.io/name", "zk0"},
          {"app.kubernetes.io/instance", run_name(run)}};
}

json child_metadata(const json& run, const std::string& name, const std::string& component) {
  return {{"name", name},
          {"namespace", run_namespace(run)},
          {"labels", child_labels(run, component)},
          {"ownerReferences", json::array({owner_reference(run)})}};
}

std::string format_cpu(double cores) {
  const long millis = std::lround(cores * 1000);
  return millis % 1000 == 0 ? std::to_string(millis / 1000) : std::to_string(millis) + "m";
}

json container_resources(const ResourcesSpec& r) {
  json res = json::object();
  if (r.cpu > 0) res["requests"]["cpu"] = format_cpu(r.cpu);
  if (!r.memory.empty()) {
    res["requests"]["memory"] = r.memory;
    res["limits"]["memory"] = r.memory;
  }
  if (r.gpu > 0) res["limits"]["nvidia.com/gpu"] = std::to_string(r.gpu);
  return res;
}

json restricted_security_context() {
  return {{"readOnlyRootFilesystem", true},
          {"allowPrivilegeEscalation", false},
          {"capabilities", {{"drop", json::array({"ALL"})}}},
          {"runAsNonRoot", true}};
}

json restricted_pod_security_context() {
  return {{"runAsNonRoot", true}, {"runAsUser", 65532}, {"runAsGroup", 65532}, {"fsGroup", 65532},
          {"seccompProfile", {{"type", "RuntimeDefault"}}}};
}

// What the restricted Pod Security Standard and zk0's own isolation need, set last: nothing in a
// spec (placement, overrides) can loosen it.
void enforce_restrictions(json& pod, const json& labels, const json& annotations) {
  auto& spec = pod["spec"];
  for (const char* key : {"hostNetwork", "hostPID", "hostIPC", "hostUsers", "shareProcessNamespace", "serviceAccountName",
                          "serviceAccount", "nodeName", "ephemeralContainers", "securityContext"})
    spec.erase(key);
  spec["automountServiceAccountToken"] = false;
  spec["securityContext"] = restricted_pod_security_context();
  for (const char* list : {"containers", "initContainers"})
    if (spec.contains(list))
      for (auto& c : spec[list]) c["securityContext"] = restricted_security_context();
  for (auto it = labels.begin(); it != labels.end(); ++it) pod["metadata"]["labels"][it.key()] = it.value();
  for (auto it = annotations.begin(); it != annotations.end(); ++it) pod["metadata"]["annotations"][it.key()] = it.value();
}

// An init container that runs `huggingface-cli download ARGS...` into the pod's Hub cache.
json hub_download(const std::string& name, const std::vector<std::string>& args, const FederationSpec& spec,
                  const OperatorSettings& settings) {
  json env = json::array({{{"name", "HF_HOME"}, {"value", kHubHome}}, {{"name", "HF_HUB_DISABLE_TELEMETRY"}, {"value", "1"}}});
  json mounts = json::array({{{"name", "hub-cache"}, {"mountPath", kHubHome}}, {{"name", "tmp"}, {"mountPath", "/tmp"}}});
  if (spec.hub_token_secret) {
    // A file, not an environment variable: environments leak into logs, crash reports and
    // `kubectl describe`; huggingface_hub reads the token from HF_TOKEN_PATH.
    env.push_back({{"name", "HF_TOKEN_PATH"}, {"value", std::string(kHubTokenMount) + "/token"}});
    mounts.push_back({{"name", "hub-token"}, {"mountPath", kHubTokenMount}, {"readOnly", true}});
  }
  json command_args = json::array({"download"});
  for (const auto& a : args) command_args.push_back(a);
  return {{"name", name},
          {"image", settings.hub_download_image},
          {"args", command_args},
          {"env", env},
          {"securityContext", restricted_security_context()},
          {"volumeMounts", mounts}};
}

// Volumes, mounts and init containers a pod needs for one dataset.
struct DatasetMount {
  json volumes = json::array();
  json mounts = json::array();
  json init_containers = json::array();
  bool uses_hub = false;
};

DatasetMount mount_dataset(const DatasetSpec& d, const std::string& volume, const std::string& mount_point,
                           const FederationSpec& spec, const OperatorSettings& settings) {
  DatasetMount m;
  if (!d.path.empty()) {
    m.volumes.push_back({{"name", volume}, {"hostPath", {{"path", d.path}, {"type", "Directory"}}}});
    m.mounts.push_back({{"name", volume}, {"mountPath", mount_point}, {"readOnly", true}});
  } else if (d.volume_claim) {
    m.volumes.push_back({{"name", volume}, {"persistentVolumeClaim", {{"claimName", d.volume_claim->claim_name}, {"readOnly", true}}}});
    json mount = {{"name", volume}, {"mountPath", mount_point}, {"readOnly", true}};
    if (!d.volume_claim->sub_path.empty()) mount["subPath"] = d.volume_claim->sub_path;
    m.mounts.push_back(mount);
  } else if (!d.repo_id.empty()) {
    m.uses_hub = true;
    m.init_containers.push_back(hub_download("download-" + volume, {"--repo-type", "dataset", d.repo_id, "--revision", d.revision},
                                             spec, settings));
  }
  return m;
}

// A SmolVLA policy named by Hub id (lerobot/smolvla_base) and the backbone whose config and
// tokenizer it reads (vlm_model_name) come into the pod's Hub cache as the datasets do.
DatasetMount mount_policy(const FederationSpec& spec, const OperatorSettings& settings) {
  DatasetMount m;
  if (spec.policy.type != "smolvla") return m;
  if (looks_like_hub_id(spec.policy.pretrained))
    m.init_containers.push_back(hub_download("download-policy", {spec.policy.pretrained}, spec, settings));
  const auto& config = spec.policy.config;
  const std::string backbone = config.is_object() && config.contains("vlm_model_name") && config["vlm_model_name"].is_string()
                                   ? config["vlm_model_name"].get<std::string>()
                                   : "HuggingFaceTB/SmolVLM2-500M-Video-Instruct";
  if (looks_like_hub_id(backbone))
    m.init_containers.push_back(hub_download(
        "download-backbone", {backbone, "config.json", "tokenizer.json", "tokenizer_config.json"}, spec, settings));
  m.uses_hub = !m.init_containers.empty();
  return m;
}

json base_pod(const json& run, const std::string& name, const std::string& component, const PodPlacementSpec& placement,
              int attempt) {
  json pod = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", child_metadata(run, name, component)}};
  pod["metadata"]["annotations"] = {{kAttemptAnnotation, std::to_string(attempt)}};
  json spec = {{"restartPolicy", "Never"},  // the operator counts and replaces failed pods itself
               {"enableServiceLinks", false},
               {"automountServiceAccountToken", false},  // no zk0 pod talks to the API server
               {"securityContext", restricted_pod_security_context()},
               {"volumes", json::array({{{"name", "spec"}, {"configMap", {{"name", config_map_name(run_name(run))}}}},
                                        {{"name", "tmp"}, {"emptyDir", {{"sizeLimit", kTmpSize}}}}})}};
  if (!placement.node_selector.empty()) spec["nodeSelector"] = placement.node_selector;
  if (!placement.tolerations.empty()) spec["tolerations"] = placement.tolerations;
  if (!placement.affinity.empty()) spec["affinity"] = placement.affinity;
  pod["spec"] = spec;
  return pod;
}

// Adds the main container and what the datasets and Secrets need, applies the user's overrides,
// then the restrictions again.
json finish_pod(json pod, json container, const std::vector<DatasetMount>& datasets, const FederationSpec& spec,
                const PodPlacementSpec& placement, const json& secret_volumes, const json& secret_mounts) {
  auto& volumes = pod["spec"]["volumes"];
  json mounts = json::array({{{"name", "spec"}, {"mountPath", kSpecMount}, {"readOnly", true}},
                             {{"name", "tmp"}, {"mountPath", "/tmp"}}});
  json init = json::array();
  bool hub = false;
  for (const auto& d : datasets) {
    for (const auto& v : d.volumes) volumes.push_back(v);
    for (const auto& m : d.mounts) mounts.push_back(m);
    for (const auto& c : d.init_containers) init.push_back(c);
    hub = hub || d.uses_hub;
  }
  if (hub) {
    volumes.push_back({{"name", "hub-cache"}, {"emptyDir", {{"sizeLimit", kHubCacheSize}}}});
    mounts.push_back({{"name", "hub-cache"}, {"mountPath", kHubHome}, {"readOnly", true}});
    container["env"].push_back({{"name", "HF_HOME"}, {"value", kHubHome}});
    if (spec.hub_token_secret)
      volumes.push_back({{"name", "hub-token"},
                         {"secret",
                          {{"secretName", spec.hub_token_secret->name},
                           {"defaultMode", 0440},
                           {"items", json::array({{{"key", spec.hub_token_secret->key}, {"path", "token"}}})}}}});
  }
  for (const auto& v : secret_volumes) volumes.push_back(v);
  for (const auto& m : secret_mounts) mounts.push_back(m);
  container["volumeMounts"] = mounts;
  pod["spec"]["containers"] = json::array({container});
  if (!init.empty()) pod["spec"]["initContainers"] = init;
  const json labels = pod["metadata"]["labels"], annotations = pod["metadata"]["annotations"];
  if (!placement.overrides.empty()) pod.merge_patch(placement.overrides);
  enforce_restrictions(pod, labels, annotations);
  return pod;
}

json secret_volume(const std::string& volume, const std::string& secret, const json& items = json()) {
  json source = {{"secretName", secret}, {"defaultMode", 0440}};
  if (!items.is_null()) source["items"] = items;
  return {{"name", volume}, {"secret", source}};
}

json read_only_mount(const std::string& volume, const std::string& path) {
  return {{"name", volume}, {"mountPath", path}, {"readOnly", true}};
}

bool allowed_host_path(const std::string& path, const OperatorSettings& settings) {
  if (path.empty() || path.front() != '/' || path.find("/../") != std::string::npos ||
      (path.size() >= 3 && path.compare(path.size() - 3, 3, "/..") == 0))
    return false;
  for (const auto& prefix : settings.host_path_prefixes) {
    const std::string p = prefix.back() == '/' ? prefix : prefix + "/";
    if (path.rfind(p, 0) == 0 || path + "/" == p) return true;
  }
  return false;
}

json metrics_port(int port) { return {{"name", "metrics"}, {"containerPort", port}, {"protocol", "TCP"}}; }

// Probes. The processes answer them from the moment they start (the health port and the metrics
// endpoint open before any model is loaded), so no initial delay. Readiness every 5 s, unready
// after two misses: a stopping aggregator leaves the Service within ~10 s. Liveness every 10 s,
// killed after three misses: the bound that matters (roundTimeoutSeconds) is already in the
// process's own verdict, and three misses keep a node saturated by aggregation or training from
// killing a healthy pod over one slow answer. With restartPolicy Never a kill fails the pod,
// which the operator replaces within runPolicy.backoffLimit like any other failure.
json probe(json action, int period_seconds, int failure_threshold) {
  action["periodSeconds"] = period_seconds;
  action["timeoutSeconds"] = 5;
  action["failureThreshold"] = failure_threshold;
  return action;
}
json readiness_probe(json action) { return probe(std::move(action), 5, 2); }
json liveness_probe(json action) { return probe(std::move(action), 10, 3); }
json grpc_health(int port, const char* service) { return {{"grpc", {{"port", port}, {"service", service}}}}; }

}  // namespace

std::string config_map_name(const std::string& run) { return run + "-spec"; }
std::string claim_name(const std::string& run) { return run + "-checkpoints"; }
std::string aggregator_name(const std::string& run) { return run + "-aggregator"; }
std::string worker_name(const std::string& run, const std::string& client) { return run + "-worker-" + client; }
std::string remote_service_name(const std::string& run) { return run + "-aggregator-remote"; }
std::string join_key_secret_name(const std::string& run) { return run + "-join"; }
std::string join_tokens_secret_name(const std::string& run) { return run + "-join-tokens"; }

std::map<std::string, std::set<std::string>> RunSecrets::required_keys() const {
  std::map<std::string, std::set<std::string>> keys;
  // ca.crt: the aggregator verifies clients with it (mutual TLS), or workers verify the server.
  if (!aggregator_tls.empty()) keys[aggregator_tls].insert({"ca.crt", "tls.crt", "tls.key"});
  for (const auto& [client, secret] : client_tls) keys[secret].insert({"ca.crt", "tls.crt", "tls.key"});
  if (!checkpoint_key.empty()) keys[checkpoint_key].insert("key");
  if (!join_ca.empty()) keys[join_ca].insert({"tls.crt", "tls.key"});
  if (!join_key.empty()) keys[join_key].insert("token.key");
  if (!hub_token.empty()) keys[hub_token].insert(hub_token_key);
  return keys;
}

RunSecrets run_secrets(const FederationSpec& spec, const OperatorSettings& settings) {
  RunSecrets s;
  const auto& tls = spec.transport.tls;
  // The chart's --mutual-tls gives mutual TLS to runs that say nothing about TLS; `mutual: true`
  // alone asks for it explicitly.
  const bool defaulted = settings.mutual_tls && !tls.enabled();
  s.mutual = tls.mutual || defaulted;
  if (!tls.secret_name.empty()) s.aggregator_tls = tls.secret_name;
  else if (defaulted || tls.generated()) s.aggregator_tls = spec.name + "-aggregator-tls";
  if (s.mutual && !s.aggregator_tls.empty())
    for (const auto& c : spec.clients)
      if (!c.remote) s.client_tls[c.name] = c.tls.secret_name.empty() ? spec.name + "-" + c.name + "-tls" : c.tls.secret_name;
  if (spec.has_remote_clients() && !spec.transport.join.ca_secret.empty()) {
    s.join_ca = spec.transport.join.ca_secret;
    s.join_key = join_key_secret_name(spec.name);
  }
  if (!spec.checkpoints.signing_key_secret.empty()) {
    s.checkpoint_key = spec.checkpoints.signing_key_secret;
  } else if (spec.checkpoints.signing_key_file.empty()) {
    s.checkpoint_key = spec.name + "-checkpoint-key";
    s.checkpoint_key_generated = true;
  }
  if (spec.hub_token_secret) {
    s.hub_token = spec.hub_token_secret->name;
    s.hub_token_key = spec.hub_token_secret->key;
  }
  return s;
}

namespace {

void check_host_path(const DatasetSpec& d, const std::string& field, const OperatorSettings& settings, std::vector<std::string>& problems) {
  if (d.path.empty() || allowed_host_path(d.path, settings)) return;
  std::string allowed;
  for (const auto& p : settings.host_path_prefixes) allowed += (allowed.empty() ? "" : ", ") + p;
  problems.push_back(field + ".path: " + d.path + " would be a hostPath volume, which this operator allows only under " +
                     (allowed.empty() ? "no prefix (--allow-host-path-prefix); use a volumeClaim" : allowed));
}

}  // namespace

std::vector<std::string> cluster_problems(const FederationSpec& spec, const OperatorSettings& settings) {
  std::vector<std::string> problems;
  const auto check = [&](const DatasetSpec& d, const std::string& field) { check_host_path(d, field, settings, problems); };
  for (size_t i = 0; i < spec.clients.size(); ++i) check(spec.clients[i].dataset, "spec.clients[" + std::to_string(i) + "].dataset");
  for (const auto& set : spec.evaluation.sets) check(set.dataset, set.field + ".dataset");
  if (spec.simulation)
    problems.push_back("spec.simulation: runs every client in one process on one machine (zk0 run); on a cluster each client "
                       "is its own pod: leave it out");
  if (spec.has_remote_clients()) {
    // The aggregator signs joining clients' certificates with the CA that signed its own, which
    // on a cluster lives in a Secret; its own certificate must come from one too.
    if (spec.transport.join.ca_secret.empty())
      problems.push_back("spec.transport.join.caSecret: required on a cluster for remote clients: the Secret (tls.crt, tls.key) of "
                         "the CA that signed the aggregator's certificate, with which the aggregator signs the certificates remote "
                         "clients get at zk0 join");
    if (run_secrets(spec, settings).aggregator_tls.empty())
      problems.push_back("spec.transport.tls: remote clients on a cluster need secretName or mutual: true (the aggregator's "
                         "certificate from a Secret)");
  }
  return problems;
}

FederationSpec in_pod_spec(const FederationSpec& spec, const OperatorSettings& settings) {
  FederationSpec s = spec;
  s.output_dir = kOutputMount;
  const auto to_mount = [](DatasetSpec& d, const std::string& mount_point) {
    if (d.path.empty() && !d.volume_claim) return;
    d.path = mount_point;
    d.volume_claim.reset();
  };
  for (auto& c : s.clients) to_mount(c.dataset, client_mount(c.name));
  for (auto& set : s.evaluation.sets) to_mount(set.dataset, evaluation_mount(set.name));
  // Every pod mounts its own Secret at the same place: the aggregator's server certificate in its
  // pod, each client's own certificate in that client's.
  const RunSecrets secrets = run_secrets(spec, settings);
  if (!secrets.aggregator_tls.empty()) {
    s.transport.tls.mutual = secrets.mutual;
    s.transport.tls.secret_name.clear();
    s.transport.tls.ca_file = std::string(kTlsMount) + "/ca.crt";
    s.transport.tls.cert_file = std::string(kTlsMount) + "/tls.crt";
    s.transport.tls.key_file = std::string(kTlsMount) + "/tls.key";
    for (auto& c : s.clients) {
      c.tls = ClientTlsSpec{};
      if (secrets.mutual && !c.remote) {
        c.tls.cert_file = std::string(kTlsMount) + "/tls.crt";
        c.tls.key_file = std::string(kTlsMount) + "/tls.key";
      }
    }
  }
  if (!secrets.join_ca.empty()) {
    s.transport.join.ca_secret.clear();
    s.transport.join.ca_key_file = std::string(kJoinCaMount) + "/tls.key";
    s.transport.join.token_key_file = std::string(kJoinKeyMount) + "/token.key";
  }
  if (!secrets.checkpoint_key.empty()) {
    s.checkpoints.signing_key_secret.clear();
    s.checkpoints.signing_key_file = std::string(kCheckpointKeyMount) + "/key";
  }
  return s;
}

json owner_reference(const json& owner, const std::string& kind) {
  return {{"apiVersion", "zk0.io/v1alpha1"},
          {"kind", kind},
          {"name", run_name(owner)},
          {"uid", owner.at("metadata").at("uid")},
          {"controller", true},
          {"blockOwnerDeletion", true}};
}

json spec_config_map(const json& run, const FederationSpec& spec, const OperatorSettings& settings) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", child_metadata(run, config_map_name(run_name(run)), "spec")},
          {"data", {{"run.yaml", to_yaml(in_pod_spec(spec, settings))}}}};
}

json checkpoint_claim(const json& run, const FederationSpec& spec) {
  json claim = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata", child_metadata(run, claim_name(run_name(run)), "aggregator")},
                {"spec",
                 {{"accessModes", json::array({"ReadWriteOnce"})},
                  {"resources", {{"requests", {{"storage", spec.aggregator.storage_size}}}}}}}};
  if (!spec.aggregator.storage_class.empty()) claim["spec"]["storageClassName"] = spec.aggregator.storage_class;
  return claim;
}

json aggregator_service(const json& run, const OperatorSettings& settings) {
  json selector = {{labels::kRun, run_name(run)}, {labels::kComponent, "aggregator"}};
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", child_metadata(run, aggregator_name(run_name(run)), "aggregator")},
          {"spec",
           {{"selector", selector},
            {"ports", json::array({{{"name", "grpc"}, {"port", settings.grpc_port}, {"targetPort", "grpc"}, {"protocol", "TCP"}},
                                   {{"name", "metrics"}, {"port", settings.aggregator_metrics_port}, {"targetPort", "metrics"},
                                    {"protocol", "TCP"}}})}}}};
}

json remote_aggregator_service(const json& run, const FederationSpec& spec, const OperatorSettings& settings) {
  const auto& expose = spec.transport.expose;
  json port = {{"name", "grpc"}, {"port", settings.grpc_port}, {"targetPort", "grpc"}, {"protocol", "TCP"}};
  if (expose.node_port) port["nodePort"] = expose.node_port;
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", child_metadata(run, remote_service_name(run_name(run)), "aggregator")},
          {"spec",
           {{"type", to_string(expose.type)},
            {"selector", {{labels::kRun, run_name(run)}, {labels::kComponent, "aggregator"}}},
            {"ports", json::array({port})}}}};
}

namespace {

// Ingress to a metrics port from the namespaces allowed to scrape (Prometheus's, the operator's,
// which reads /status); from anywhere when none are configured.
json metrics_ingress(const OperatorSettings& settings, int port) {
  json rule = {{"ports", json::array({{{"port", port}, {"protocol", "TCP"}}})}};
  if (!settings.metrics_namespaces.empty())
    rule["from"] = json::array({{{"namespaceSelector",
                                  {{"matchExpressions", json::array({{{"key", "kubernetes.io/metadata.name"},
                                                                      {"operator", "In"},
                                                                      {"values", settings.metrics_namespaces}}})}}}}});
  return rule;
}

}  // namespace

json aggregator_network_policy(const json& run, const FederationSpec& spec, const OperatorSettings& settings) {
  const std::string name = run_name(run);
  json grpc = {{"ports", json::array({{{"port", settings.grpc_port}, {"protocol", "TCP"}}})}};
  // Remote clients come from anywhere outside the cluster: the rule names no source, and mutual
  // TLS with certificates bound to client names decides who gets past the port.
  if (!spec.has_remote_clients())
    grpc["from"] = json::array({{{"podSelector", {{"matchLabels", {{labels::kRun, name}, {labels::kComponent, "worker"}}}}}}});
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", child_metadata(run, aggregator_name(name), "aggregator")},
          {"spec",
           {{"podSelector", {{"matchLabels", {{labels::kRun, name}, {labels::kComponent, "aggregator"}}}}},
            {"policyTypes", json::array({"Ingress"})},
            {"ingress", json::array({grpc, metrics_ingress(settings, settings.aggregator_metrics_port)})}}}};
}

json worker_network_policy(const json& run, const OperatorSettings& settings) {
  const std::string name = run_name(run);
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", child_metadata(run, name + "-workers", "worker")},
          {"spec",
           {{"podSelector", {{"matchLabels", {{labels::kRun, name}, {labels::kComponent, "worker"}}}}},
            {"policyTypes", json::array({"Ingress"})},
            {"ingress", json::array({metrics_ingress(settings, settings.worker_metrics_port)})}}}};
}

json checkpoint_key_secret(const json& run) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", child_metadata(run, run_name(run) + "-checkpoint-key", "aggregator")},
          {"type", "Opaque"},
          {"stringData", {{"key", random_hex(32)}}}};
}

json join_key_secret(const json& run) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", child_metadata(run, join_key_secret_name(run_name(run)), "aggregator")},
          {"type", "Opaque"},
          {"stringData", {{"token.key", random_hex(32)}}}};
}

json join_tokens_secret(const json& run, const std::map<std::string, std::string>& tokens) {
  json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", child_metadata(run, join_tokens_secret_name(run_name(run)), "join-tokens")},
                 {"type", "Opaque"},
                 {"stringData", json::object()}};
  for (const auto& [client, token] : tokens) secret["stringData"][client] = token;
  return secret;
}

json aggregator_pod(const json& run, const FederationSpec& spec, const OperatorSettings& settings, int attempt) {
  const std::string name = run_name(run);
  json pod = base_pod(run, aggregator_name(name), "aggregator", spec.aggregator.pod, attempt);
  pod["spec"]["volumes"].push_back({{"name", "outputs"}, {"persistentVolumeClaim", {{"claimName", claim_name(name)}}}});
  json container = {
      {"name", "aggregator"},
      {"image", settings.aggregator_image},
      {"args", json::array({"--spec", std::string(kSpecMount) + "/run.yaml", "--listen", "0.0.0.0:" + std::to_string(settings.grpc_port),
                            "--metrics-listen", "0.0.0.0:" + std::to_string(settings.aggregator_metrics_port),
                            "--health-listen", "0.0.0.0:" + std::to_string(settings.aggregator_health_port),
                            "--termination-log", "/dev/termination-log"})},
      // The run's last status (round, loss) outlives the process there; a crash leaves its log's end.
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
      {"ports", json::array({{{"name", "grpc"}, {"containerPort", settings.grpc_port}, {"protocol", "TCP"}},
                             {{"name", "health"}, {"containerPort", settings.aggregator_health_port}, {"protocol", "TCP"}},
                             metrics_port(settings.aggregator_metrics_port)})},
      {"env", json::array()},
      {"resources", container_resources(spec.aggregator.resources)},
      // grpc probes name their port by number; the services: core/transport/health_services.h.
      {"readinessProbe", readiness_probe(grpc_health(settings.aggregator_health_port, AggregatorHealthServices::kReadiness))},
      {"livenessProbe", liveness_probe(grpc_health(settings.aggregator_health_port, AggregatorHealthServices::kLiveness))}};
  std::vector<DatasetMount> datasets;
  for (const auto& set : spec.evaluation.sets)
    datasets.push_back(mount_dataset(set.dataset, "evaluation-" + set.name, evaluation_mount(set.name), spec, settings));
  datasets.push_back(mount_policy(spec, settings));
  const RunSecrets secrets = run_secrets(spec, settings);
  json volumes = json::array(), mounts = json::array();
  if (!secrets.aggregator_tls.empty()) {
    volumes.push_back(secret_volume("tls", secrets.aggregator_tls));
    mounts.push_back(read_only_mount("tls", kTlsMount));
  }
  if (!secrets.checkpoint_key.empty()) {
    volumes.push_back(secret_volume("checkpoint-key", secrets.checkpoint_key, json::array({{{"key", "key"}, {"path", "key"}}})));
    mounts.push_back(read_only_mount("checkpoint-key", kCheckpointKeyMount));
  }
  if (!secrets.join_ca.empty()) {
    // Only the CA's key from its Secret, and the token key: what signing joining clients needs.
    volumes.push_back(secret_volume("join-ca", secrets.join_ca, json::array({{{"key", "tls.key"}, {"path", "tls.key"}}})));
    mounts.push_back(read_only_mount("join-ca", kJoinCaMount));
    volumes.push_back(secret_volume("join", secrets.join_key, json::array({{{"key", "token.key"}, {"path", "token.key"}}})));
    mounts.push_back(read_only_mount("join", kJoinKeyMount));
  }
  json done = finish_pod(pod, container, datasets, spec, spec.aggregator.pod, volumes, mounts);
  done["spec"]["containers"][0]["volumeMounts"].push_back({{"name", "outputs"}, {"mountPath", kOutputMount}});
  return done;
}

json worker_pod(const json& run, const FederationSpec& spec, const ClientSpec& client, const OperatorSettings& settings,
                int attempt) {
  const std::string name = run_name(run);
  json pod = base_pod(run, worker_name(name, client.name), "worker", client.pod, attempt);
  pod["metadata"]["labels"][labels::kClient] = client.name;
  const std::string aggregator = aggregator_name(name) + "." + run_namespace(run) + ".svc:" + std::to_string(settings.grpc_port);
  json container = {
      {"name", "worker"},
      {"image", settings.worker_image},
      {"args", json::array({"--spec", std::string(kSpecMount) + "/run.yaml", "--client", client.name, "--aggregator", aggregator,
                            "--metrics-listen", "0.0.0.0:" + std::to_string(settings.worker_metrics_port)})},
      {"ports", json::array({metrics_port(settings.worker_metrics_port)})},
      // A worker's last log line says why it failed (e.g. the field of an impossible spec).
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
      {"env", json::array()},
      {"resources", container_resources(client.resources)},
      {"livenessProbe", liveness_probe({{"httpGet", {{"path", "/healthz"}, {"port", "metrics"}}}})}};
  std::vector<DatasetMount> datasets{mount_dataset(client.dataset, "dataset", client_mount(client.name), spec, settings),
                                     mount_policy(spec, settings)};
  // Only its own certificate; without mutual TLS only the CA that verifies the aggregator, never
  // the aggregator's key.
  const RunSecrets secrets = run_secrets(spec, settings);
  json volumes = json::array(), mounts = json::array();
  if (secrets.client_tls.count(client.name)) {
    volumes.push_back(secret_volume("tls", secrets.client_tls.at(client.name)));
    mounts.push_back(read_only_mount("tls", kTlsMount));
  } else if (!secrets.aggregator_tls.empty()) {
    volumes.push_back(secret_volume("tls", secrets.aggregator_tls, json::array({{{"key", "ca.crt"}, {"path", "ca.crt"}}})));
    mounts.push_back(read_only_mount("tls", kTlsMount));
  }
  return finish_pod(pod, container, datasets, spec, client.pod, volumes, mounts);
}

namespace {

const char* kJoinTokenMount = "/etc/zk0/join-token";
const char* kMembershipData = "/data/dataset";
const char* kMembershipState = "/var/lib/zk0";

json membership_metadata(const json& membership, const std::string& name) {
  const std::string owner = run_name(membership);
  return {{"name", name},
          {"namespace", run_namespace(membership)},
          {"labels",
           {{labels::kMembership, owner},
            {labels::kComponent, "worker"},
            {labels::kManagedBy, labels::kManager},
            {"app.kubernetes.io/name", "zk0"},
            {"app.kubernetes.io/instance", owner}}},
          {"ownerReferences", json::array({owner_reference(membership, "FederationMembership")})}};
}

}  // namespace

std::string membership_worker_name(const std::string& membership) { return membership + "-worker"; }
std::string membership_state_claim_name(const std::string& membership) { return membership + "-state"; }

std::vector<std::string> membership_problems(const MembershipSpec& spec, const OperatorSettings& settings) {
  std::vector<std::string> problems;
  check_host_path(spec.dataset, "spec.dataset", settings, problems);
  return problems;
}

json membership_state_claim(const json& membership, const MembershipSpec& spec) {
  json claim = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata", membership_metadata(membership, membership_state_claim_name(spec.name))},
                {"spec", {{"accessModes", json::array({"ReadWriteOnce"})}, {"resources", {{"requests", {{"storage", spec.storage_size}}}}}}}};
  if (!spec.storage_class.empty()) claim["spec"]["storageClassName"] = spec.storage_class;
  return claim;
}

json membership_network_policy(const json& membership, const OperatorSettings& settings) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", membership_metadata(membership, membership_worker_name(run_name(membership)))},
          {"spec",
           {{"podSelector", {{"matchLabels", {{labels::kMembership, run_name(membership)}, {labels::kComponent, "worker"}}}}},
            {"policyTypes", json::array({"Ingress"})},
            {"ingress", json::array({metrics_ingress(settings, settings.worker_metrics_port)})}}}};
}

json membership_pod(const json& membership, const MembershipSpec& spec, const OperatorSettings& settings, int attempt) {
  json pod = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", membership_metadata(membership, membership_worker_name(spec.name))}};
  pod["metadata"]["annotations"] = {{kAttemptAnnotation, std::to_string(attempt)}};
  json volumes = json::array({{{"name", "tmp"}, {"emptyDir", {{"sizeLimit", kTmpSize}}}},
                              secret_volume("join-token", spec.token_secret.name,
                                            json::array({{{"key", spec.token_secret.key}, {"path", "token"}}})),
                              {{"name", "state"}, {"persistentVolumeClaim", {{"claimName", membership_state_claim_name(spec.name)}}}}});
  json mounts = json::array({{{"name", "tmp"}, {"mountPath", "/tmp"}}, read_only_mount("join-token", kJoinTokenMount),
                             {{"name", "state"}, {"mountPath", kMembershipState}}});
  const DatasetMount data = mount_dataset(spec.dataset, "dataset", kMembershipData, FederationSpec{}, settings);
  for (const auto& v : data.volumes) volumes.push_back(v);
  for (const auto& m : data.mounts) mounts.push_back(m);
  // The token comes from the mounted Secret, never the command line (a pod's spec shows that to
  // whoever may read pods); the state claim keeps the certificate, so a replaced pod rejoins with
  // it and the spent token is only read for the run's and client's names.
  json container = {
      {"name", "worker"},
      {"image", settings.worker_image},
      {"args", json::array({"join", "--endpoint", spec.endpoint, "--token-file", std::string(kJoinTokenMount) + "/token", "--dataset",
                            kMembershipData, "--state-dir", std::string(kMembershipState) + "/state", "--device",
                            spec.resources.gpu > 0 ? "cuda" : "cpu", "--metrics-listen",
                            "0.0.0.0:" + std::to_string(settings.worker_metrics_port), "--termination-log", "/dev/termination-log"})},
      {"ports", json::array({metrics_port(settings.worker_metrics_port)})},
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
      {"env", json::array()},
      {"resources", container_resources(spec.resources)},
      {"livenessProbe", liveness_probe({{"httpGet", {{"path", "/healthz"}, {"port", "metrics"}}}})},
      {"volumeMounts", mounts}};
  json pod_spec = {{"restartPolicy", "Never"},
                   {"enableServiceLinks", false},
                   {"automountServiceAccountToken", false},
                   {"securityContext", restricted_pod_security_context()},
                   {"volumes", volumes},
                   {"containers", json::array({container})}};
  if (!spec.pod.node_selector.empty()) pod_spec["nodeSelector"] = spec.pod.node_selector;
  if (!spec.pod.tolerations.empty()) pod_spec["tolerations"] = spec.pod.tolerations;
  if (!spec.pod.affinity.empty()) pod_spec["affinity"] = spec.pod.affinity;
  pod["spec"] = pod_spec;
  const json labels = pod["metadata"]["labels"], annotations = pod["metadata"]["annotations"];
  if (!spec.pod.overrides.empty()) pod.merge_patch(spec.pod.overrides);
  enforce_restrictions(pod, labels, annotations);
  return pod;
}

}  // namespace zk0::op
