#include "operator/children.h"

#include <cmath>
#include <sstream>

#include "core/lerobot/hub_cache.h"

namespace zk0::op {

namespace {

using json = nlohmann::json;

const char* kSpecMount = "/etc/zk0/spec";
const char* kTlsMount = "/etc/zk0/tls";
const char* kOutputMount = "/var/lib/zk0";
const char* kHubHome = "/var/cache/huggingface";

std::string client_mount(const std::string& client) { return "/data/clients/" + client; }
const char* kEvaluationMount = "/data/evaluation";

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

// An init container that runs `huggingface-cli download ARGS...` into the pod's Hub cache.
json hub_download(const std::string& name, const std::vector<std::string>& args, const FederationSpec& spec,
                  const OperatorSettings& settings) {
  json env = json::array({{{"name", "HF_HOME"}, {"value", kHubHome}}, {{"name", "HF_HUB_DISABLE_TELEMETRY"}, {"value", "1"}}});
  if (spec.hub_token_secret)
    env.push_back({{"name", "HF_TOKEN"},
                   {"valueFrom", {{"secretKeyRef", {{"name", spec.hub_token_secret->name}, {"key", spec.hub_token_secret->key}}}}}});
  json command_args = json::array({"download"});
  for (const auto& a : args) command_args.push_back(a);
  return {{"name", name},
          {"image", settings.hub_download_image},
          {"args", command_args},
          {"env", env},
          {"securityContext", restricted_security_context()},
          {"volumeMounts", json::array({{{"name", "hub-cache"}, {"mountPath", kHubHome}}, {{"name", "tmp"}, {"mountPath", "/tmp"}}})}};
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
               {"securityContext",
                {{"runAsNonRoot", true}, {"runAsUser", 65532}, {"runAsGroup", 65532}, {"fsGroup", 65532},
                 {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
               {"volumes", json::array({{{"name", "spec"}, {"configMap", {{"name", config_map_name(run_name(run))}}}},
                                        {{"name", "tmp"}, {"emptyDir", json::object()}}})}};
  if (!placement.node_selector.empty()) spec["nodeSelector"] = placement.node_selector;
  if (!placement.tolerations.empty()) spec["tolerations"] = placement.tolerations;
  if (!placement.affinity.empty()) spec["affinity"] = placement.affinity;
  pod["spec"] = spec;
  return pod;
}

// Adds the main container and what the datasets and TLS need, then applies the user's overrides.
json finish_pod(json pod, json container, const std::vector<DatasetMount>& datasets, const FederationSpec& spec,
                const OperatorSettings& settings, const PodPlacementSpec& placement) {
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
    volumes.push_back({{"name", "hub-cache"}, {"emptyDir", json::object()}});
    mounts.push_back({{"name", "hub-cache"}, {"mountPath", kHubHome}, {"readOnly", true}});
    container["env"].push_back({{"name", "HF_HOME"}, {"value", kHubHome}});
  }
  const std::string secret = tls_secret_name(spec, settings);
  if (!secret.empty()) {
    volumes.push_back({{"name", "tls"}, {"secret", {{"secretName", secret}, {"defaultMode", 0440}}}});
    mounts.push_back({{"name", "tls"}, {"mountPath", kTlsMount}, {"readOnly", true}});
  }
  container["volumeMounts"] = mounts;
  container["securityContext"] = restricted_security_context();
  pod["spec"]["containers"] = json::array({container});
  if (!init.empty()) pod["spec"]["initContainers"] = init;
  if (!placement.overrides.empty()) pod.merge_patch(placement.overrides);
  return pod;
}

json metrics_port(int port) { return {{"name", "metrics"}, {"containerPort", port}, {"protocol", "TCP"}}; }

}  // namespace

std::string config_map_name(const std::string& run) { return run + "-spec"; }
std::string claim_name(const std::string& run) { return run + "-checkpoints"; }
std::string aggregator_name(const std::string& run) { return run + "-aggregator"; }
std::string worker_name(const std::string& run, const std::string& client) { return run + "-worker-" + client; }

std::string tls_secret_name(const FederationSpec& spec, const OperatorSettings& settings) {
  if (!spec.transport.tls.secret_name.empty()) return spec.transport.tls.secret_name;
  if (settings.mutual_tls && !spec.transport.tls.enabled()) return spec.name + "-tls";
  return "";
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
  to_mount(s.evaluation.dataset, kEvaluationMount);
  if (!tls_secret_name(spec, settings).empty()) {
    s.transport.tls.mutual = spec.transport.tls.enabled() ? spec.transport.tls.mutual : true;
    s.transport.tls.secret_name.clear();
    s.transport.tls.ca_file = std::string(kTlsMount) + "/ca.crt";
    s.transport.tls.cert_file = std::string(kTlsMount) + "/tls.crt";
    s.transport.tls.key_file = std::string(kTlsMount) + "/tls.key";
  }
  return s;
}

json owner_reference(const json& run) {
  return {{"apiVersion", "zk0.io/v1alpha1"},
          {"kind", "FederationRun"},
          {"name", run_name(run)},
          {"uid", run.at("metadata").at("uid")},
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

json aggregator_network_policy(const json& run, const OperatorSettings& settings) {
  const std::string name = run_name(run);
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", child_metadata(run, aggregator_name(name), "aggregator")},
          {"spec",
           {{"podSelector", {{"matchLabels", {{labels::kRun, name}, {labels::kComponent, "aggregator"}}}}},
            {"policyTypes", json::array({"Ingress"})},
            {"ingress",
             json::array({{{"from", json::array({{{"podSelector", {{"matchLabels", {{labels::kRun, name}, {labels::kComponent, "worker"}}}}}}})},
                           {"ports", json::array({{{"port", settings.grpc_port}, {"protocol", "TCP"}}})}},
                          // Prometheus and the operator (status) live elsewhere in the cluster.
                          {{"ports", json::array({{{"port", settings.aggregator_metrics_port}, {"protocol", "TCP"}}})}}})}}}};
}

json aggregator_pod(const json& run, const FederationSpec& spec, const OperatorSettings& settings, int attempt) {
  const std::string name = run_name(run);
  json pod = base_pod(run, aggregator_name(name), "aggregator", spec.aggregator.pod, attempt);
  pod["spec"]["automountServiceAccountToken"] = false;
  pod["spec"]["volumes"].push_back({{"name", "outputs"}, {"persistentVolumeClaim", {{"claimName", claim_name(name)}}}});
  json container = {
      {"name", "aggregator"},
      {"image", settings.aggregator_image},
      {"args", json::array({"--spec", std::string(kSpecMount) + "/run.yaml", "--listen", "0.0.0.0:" + std::to_string(settings.grpc_port),
                            "--metrics-listen", "0.0.0.0:" + std::to_string(settings.aggregator_metrics_port)})},
      {"ports", json::array({{{"name", "grpc"}, {"containerPort", settings.grpc_port}, {"protocol", "TCP"}},
                             metrics_port(settings.aggregator_metrics_port)})},
      {"env", json::array()},
      {"resources", container_resources(spec.aggregator.resources)},
      {"readinessProbe", {{"tcpSocket", {{"port", "grpc"}}}, {"periodSeconds", 5}}}};
  std::vector<DatasetMount> datasets{mount_dataset(spec.evaluation.dataset, "evaluation-data", kEvaluationMount, spec, settings),
                                     mount_policy(spec, settings)};
  json done = finish_pod(pod, container, datasets, spec, settings, spec.aggregator.pod);
  done["spec"]["containers"][0]["volumeMounts"].push_back({{"name", "outputs"}, {"mountPath", kOutputMount}});
  return done;
}

json worker_pod(const json& run, const FederationSpec& spec, const ClientSpec& client, const OperatorSettings& settings,
                int attempt) {
  const std::string name = run_name(run);
  json pod = base_pod(run, worker_name(name, client.name), "worker", client.pod, attempt);
  pod["metadata"]["labels"][labels::kClient] = client.name;
  pod["spec"]["automountServiceAccountToken"] = false;  // workers never talk to the API server
  const std::string aggregator = aggregator_name(name) + "." + run_namespace(run) + ".svc:" + std::to_string(settings.grpc_port);
  json container = {
      {"name", "worker"},
      {"image", settings.worker_image},
      {"args", json::array({"--spec", std::string(kSpecMount) + "/run.yaml", "--client", client.name, "--aggregator", aggregator,
                            "--metrics-listen", "0.0.0.0:" + std::to_string(settings.worker_metrics_port)})},
      {"ports", json::array({metrics_port(settings.worker_metrics_port)})},
      {"env", json::array()},
      {"resources", container_resources(client.resources)}};
  std::vector<DatasetMount> datasets{mount_dataset(client.dataset, "dataset", client_mount(client.name), spec, settings),
                                     mount_policy(spec, settings)};
  return finish_pod(pod, container, datasets, spec, settings, client.pod);
}

}  // namespace zk0::op
