#pragma once
// The objects a FederationRun owns, as the operator wants them to be: a pure function of the
// run, its parsed spec and the operator's settings, so that tests can check every manifest
// against Kubernetes' schemas without a cluster.
//
//   <run>-spec          ConfigMap  the spec as the pods read it (paths rewritten to mounts)
//   <run>-checkpoints   PVC        the aggregator's outputDir: checkpoints, history, charts
//   <run>-aggregator    Service    gRPC (50051) and metrics (9464) of the aggregator pod
//   <run>-aggregator    Pod        probed by gRPC health (readiness, liveness) on its health port
//   <run>-aggregator    NetworkPolicy  gRPC only from the run's own workers; metrics only from the
//                                  namespaces allowed to scrape (Prometheus's, the operator's)
//   <run>-workers       NetworkPolicy  workers accept only metrics scrapes, from the same
//   <run>-worker-<client> Pod      one per client dataset, with its GPU request and placement; its
//                                  liveness probe fails when training is stuck (GET /healthz)
//   <run>-checkpoint-key Secret    the key that signs checkpoints, made once unless the spec names one
// With remote clients (spec.clients[].remote), which have no pod here:
//   <run>-aggregator-remote Service  only gRPC, as a NodePort or LoadBalancer (transport.expose)
//   <run>-join          Secret     the key join tokens are signed with, made once
//   <run>-join-tokens   Secret     one single-use join token per remote client, for the run's owner
// and the aggregator's NetworkPolicy admits gRPC from anywhere (mutual TLS decides who gets in).
//
// Every pod is restricted whatever the spec says: non-root, read-only root file system, no
// privilege escalation or capabilities, RuntimeDefault seccomp, no service-account token, no host
// namespaces; pod.overrides may touch only kPodOverride*Fields, and the restrictions are applied
// again after it. A pod mounts only its own Secret: the aggregator its server certificate and the
// checkpoint key, each worker its own client certificate.
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"
#include "core/spec/membership_spec.h"

namespace zk0::op {

struct OperatorSettings {
  std::string aggregator_image = "ghcr.io/zk0/aggregator:0.1.0";
  std::string worker_image = "ghcr.io/zk0/worker:0.1.0";
  std::string hub_download_image = "ghcr.io/zk0/hub-download:0.1.0";
  bool mutual_tls = false;  // runs without a TLS block get mutual TLS from Secrets (run_secrets)
  // A client dataset given by `path` becomes a hostPath volume only under one of these prefixes;
  // none by default, since a hostPath is a door to the node.
  std::vector<std::string> host_path_prefixes;
  // Namespaces whose pods may scrape the run's metrics ports (Prometheus's, the operator's own);
  // empty: any.
  std::vector<std::string> metrics_namespaces;
  int grpc_port = 50051;
  // The aggregator's plaintext gRPC health port, for the kubelet's grpc probes (which cannot speak
  // TLS): neither the Service nor the NetworkPolicy opens it to pods, and NetworkPolicies always
  // admit traffic from the pod's own node, where the kubelet probes from.
  int aggregator_health_port = 50052;
  int aggregator_metrics_port = 9464;
  int worker_metrics_port = 9465;
};

// Labels on every child; the chart's PodMonitor selects managed-by, dashboards filter by run.
namespace labels {
constexpr const char* kRun = "zk0.io/run";
constexpr const char* kClient = "zk0.io/client";
constexpr const char* kMembership = "zk0.io/membership";
constexpr const char* kComponent = "app.kubernetes.io/component";
constexpr const char* kManagedBy = "app.kubernetes.io/managed-by";
constexpr const char* kManager = "zk0-operator";
}  // namespace labels

// The annotation holding a pod's attempt number (1 for the first pod of a client).
constexpr const char* kAttemptAnnotation = "zk0.io/attempt";

std::string config_map_name(const std::string& run);
std::string claim_name(const std::string& run);
std::string aggregator_name(const std::string& run);
std::string worker_name(const std::string& run, const std::string& client);
std::string remote_service_name(const std::string& run);
std::string join_key_secret_name(const std::string& run);
std::string join_tokens_secret_name(const std::string& run);
// The Secrets a run's pods mount. TLS Secrets hold ca.crt, tls.crt and tls.key, as cert-manager
// writes them.
struct RunSecrets {
  bool mutual = false;
  std::string aggregator_tls;                     // the aggregator's server certificate; empty: no TLS
  std::map<std::string, std::string> client_tls;  // client -> its own certificate (mutual TLS); pods only
  std::string join_ca;                            // transport.join.caSecret: tls.crt, tls.key
  std::string join_key;                           // <run>-join, which the operator creates: token.key
  std::string checkpoint_key;                     // key `key`
  bool checkpoint_key_generated = false;          // <run>-checkpoint-key, which the operator creates
  std::string hub_token;
  std::string hub_token_key;

  // Each Secret once, with the keys the pods read from it: a Secret without one of them would
  // leave a pod in ContainerCreating (FailedMount) or crash its process on a missing file.
  std::map<std::string, std::set<std::string>> required_keys() const;
};
RunSecrets run_secrets(const FederationSpec& spec, const OperatorSettings& settings);

// Problems a spec has on this cluster that parse_spec cannot know (the operator's settings), each
// naming its field: a dataset path outside the allowed host-path prefixes.
std::vector<std::string> cluster_problems(const FederationSpec& spec, const OperatorSettings& settings);

// The spec as pods read it: outputDir on the claim, datasets at their mount points, TLS files
// from the Secret's mount.
FederationSpec in_pod_spec(const FederationSpec& spec, const OperatorSettings& settings);

// The controller reference to a FederationRun or (kind) a FederationMembership. Objects from a
// list carry no kind of their own.
nlohmann::json owner_reference(const nlohmann::json& owner, const std::string& kind = "FederationRun");
nlohmann::json spec_config_map(const nlohmann::json& run, const FederationSpec& spec, const OperatorSettings& settings);
nlohmann::json checkpoint_claim(const nlohmann::json& run, const FederationSpec& spec);
nlohmann::json aggregator_service(const nlohmann::json& run, const OperatorSettings& settings);
nlohmann::json remote_aggregator_service(const nlohmann::json& run, const FederationSpec& spec, const OperatorSettings& settings);
nlohmann::json aggregator_network_policy(const nlohmann::json& run, const FederationSpec& spec, const OperatorSettings& settings);
nlohmann::json worker_network_policy(const nlohmann::json& run, const OperatorSettings& settings);
// 32 random bytes under key `key`; created once, never updated (a new key would orphan the run's
// checkpoints).
nlohmann::json checkpoint_key_secret(const nlohmann::json& run);
// 32 random bytes as hex under key `token.key`; created once (a new key voids the tokens issued).
nlohmann::json join_key_secret(const nlohmann::json& run);
// The tokens of the remote clients that have not joined, by client name.
nlohmann::json join_tokens_secret(const nlohmann::json& run, const std::map<std::string, std::string>& tokens);
nlohmann::json aggregator_pod(const nlohmann::json& run, const FederationSpec& spec, const OperatorSettings& settings, int attempt);
nlohmann::json worker_pod(const nlohmann::json& run, const FederationSpec& spec, const ClientSpec& client,
                          const OperatorSettings& settings, int attempt);

// A FederationMembership's children, in the owner's cluster:
//   <membership>-state   PVC            the worker's key, certificate, kept spec and optimizer state
//   <membership>-worker  NetworkPolicy  the worker accepts only metrics scrapes (it only dials out)
//   <membership>-worker  Pod            `zk0-worker join` with the token from its Secret, restricted as
//                                       a run's pods are
std::string membership_worker_name(const std::string& membership);
std::string membership_state_claim_name(const std::string& membership);
// A dataset path outside the allowed host-path prefixes, named by its field.
std::vector<std::string> membership_problems(const MembershipSpec& spec, const OperatorSettings& settings);
nlohmann::json membership_state_claim(const nlohmann::json& membership, const MembershipSpec& spec);
nlohmann::json membership_network_policy(const nlohmann::json& membership, const OperatorSettings& settings);
nlohmann::json membership_pod(const nlohmann::json& membership, const MembershipSpec& spec, const OperatorSettings& settings, int attempt);

}  // namespace zk0::op
