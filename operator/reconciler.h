#pragma once
// The reconcile loop of FederationRuns, level-based as controller-runtime's: each call observes
// the run and its pods as they are now, compares them with what the spec wants, acts
// idempotently (create what is missing, replace failed pods within the retry budget, delete what
// must go) and reports status, conditions and events. Nothing depends on having seen an event.
//
// Retry accounting, per client and for the aggregator: every failed pod and every container
// restart counts against spec.runPolicy.backoffLimit. Exit codes 2 (invalid input) and 3 (the
// run failed by its own rules) are not retried. A client out of retries is excluded; the run goes
// on while the clients left can still form a quorum (strategy.minFitClients).
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"
#include "operator/applied_children.h"
#include "operator/children.h"
#include "operator/kube/client.h"
#include "operator/kube/informer.h"
#include "operator/metrics.h"
#include "operator/status_writes.h"

namespace zk0::op {

// Reads a pod's GET /status at http://IP:PORT/status, at most kMaxStatusBytes: an aggregator's
// (its status.json, bounded by the client count, about 200 bytes each) or a worker's.
constexpr size_t kMaxStatusBytes = 1 << 20;
using StatusReader = std::function<std::optional<nlohmann::json>(const std::string& ip, int port)>;
StatusReader http_status_reader();

// Takes an aggregator's /status document (Coordinator::status_json) into a run's status:
// currentRound, readyClients, serverEvalLoss, and per client lastLoss and aggregatorState, each only
// when it has the documented shape. Returns a RoundCompleted event's message when a round ended
// since the status was last merged.
std::optional<std::string> merge_aggregator_status(nlohmann::json& run_status, const nlohmann::json& reported,
                                                   const FederationSpec& spec);

class Reconciler {
 public:
  Reconciler(kube::KubeClient& client, OperatorSettings settings, OperatorMetrics& metrics, kube::Informer& runs,
             kube::Informer& pods, StatusReader read_aggregator_status);

  // key: "namespace/name". Returns when to look again without an event (zero: only on events).
  // Throws kube::ApiError when the API server refused an action; the caller retries with backoff.
  std::chrono::milliseconds reconcile(const std::string& key);

  static constexpr const char* kGroupVersionPath = "/apis/zk0.io/v1alpha1";

 private:
  struct Context;
  std::chrono::milliseconds reconcile_run(Context& c);
  void ensure_owned_objects(Context& c);
  // Observes a member's pod (the aggregator or a client), counts failures, replaces or excludes.
  void reconcile_member(Context& c, nlohmann::json& record, const std::string& pod_name, const std::optional<nlohmann::json>& pod,
                        const std::function<nlohmann::json(int attempt)>& desired_pod, const std::string& member);
  void read_aggregator(Context& c, const std::optional<nlohmann::json>& pod);
  void finish(Context& c, const std::string& phase, const std::string& reason, const std::string& message);
  // Deletes the run's pods; only_active keeps finished ones for their logs (running ones hold GPUs).
  void delete_pods(Context& c, bool only_active);
  void remove_if_present(const std::string& path);
  // PodsReady: False with the scheduler's or kubelet's reason while a pod cannot start (no node
  // fits, its image cannot be pulled, its configuration is refused), naming each pod.
  void report_pods_ready(Context& c);
  bool exists(const std::string& path);
  // Condition `type` False with `reason`, and a Warning event when the condition did not already
  // say so (the same reason, and with `each_message` the same message).
  void set_blocked(Context& c, const std::string& type, const std::string& reason, const std::string& message, bool each_message);
  // Waits visibly for something the pods would mount: Ready=False with `reason`, a Warning event
  // when the wait begins, and a look again in a few seconds.
  std::chrono::milliseconds wait_for_missing(Context& c, const std::string& reason, const std::string& message);
  // Creates a Secret the operator makes once and never replaces (a checkpoint key, a join token
  // key), unless it exists.
  void ensure_made_once(Context& c, const nlohmann::json& secret, const std::string& note);
  // Remote clients: checks that the join CA is the one the aggregator's certificate chains to,
  // keeps a valid token in <run>-join-tokens for each remote client that has not joined, and
  // says where to join. `held`: the `data` of each Secret the run needs, as this pass read them.
  // Returns when to look again if something it needs is missing.
  std::optional<std::chrono::milliseconds> issue_join_tokens(Context& c, const RunSecrets& secrets,
                                                             const std::map<std::string, nlohmann::json>& held);
  void report_join_endpoint(Context& c, const std::optional<nlohmann::json>& aggregator);
  // The object at `path`; nullopt when it does not exist.
  std::optional<nlohmann::json> get_if_present(const std::string& path);
  void write_status(Context& c);

  kube::KubeClient& client_;
  OperatorSettings settings_;
  OperatorMetrics& metrics_;
  kube::Informer& runs_;
  kube::Informer& pods_;
  StatusReader read_aggregator_status_;
  StatusWrites written_;
  AppliedChildren children_;
};

// Sets a metav1.Condition in conditions: lastTransitionTime changes only when status flips.
void set_condition(nlohmann::json& conditions, const std::string& type, bool status, const std::string& reason,
                   const std::string& message, int64_t generation, const std::string& now);

}  // namespace zk0::op
