#include "operator/reconciler.h"

#include <cmath>
#include <set>
#include <sstream>

#include "core/metrics/http_get.h"
#include "core/security/certificate.h"
#include "core/security/join_token.h"
#include "core/util/base64.h"
#include "core/util/exit_codes.h"
#include "core/util/log.h"
#include "operator/kube/time_format.h"
#include "operator/events.h"
#include "operator/pod_status.h"

namespace zk0::op {

using json = nlohmann::json;
using Clock = std::chrono::system_clock;
using std::chrono::milliseconds;

namespace {

const char* kPhasePending = "Pending";
const char* kPhaseRunning = "Running";
const char* kPhaseSuspended = "Suspended";
const char* kPhaseSucceeded = "Succeeded";
const char* kPhaseFailed = "Failed";

std::string runs_path(const std::string& ns) { return std::string(Reconciler::kGroupVersionPath) + "/namespaces/" + ns + "/federationruns"; }
std::string core_path(const std::string& ns, const std::string& plural) { return "/api/v1/namespaces/" + ns + "/" + plural; }

bool is_terminal(const std::string& phase) { return phase == kPhaseSucceeded || phase == kPhaseFailed; }

// Every claim a run's datasets name, with the field that names it.
std::vector<std::pair<std::string, std::string>> dataset_claims(const FederationSpec& spec) {
  std::vector<std::pair<std::string, std::string>> claims;
  for (size_t i = 0; i < spec.clients.size(); ++i)
    if (spec.clients[i].dataset.volume_claim)
      claims.emplace_back(spec.clients[i].dataset.volume_claim->claim_name, "spec.clients[" + std::to_string(i) + "].dataset.volumeClaim");
  for (const auto& set : spec.evaluation.sets)
    if (set.dataset.volume_claim) claims.emplace_back(set.dataset.volume_claim->claim_name, set.field + ".dataset.volumeClaim");
  return claims;
}

// The decoded value of `key` in the `data` of Secret `name`; nullopt when either is missing or the
// value is not base64.
std::optional<std::string> secret_value(const std::map<std::string, json>& held, const std::string& name, const std::string& key) {
  const auto secret = held.find(name);
  if (secret == held.end() || !secret->second.contains(key) || !secret->second[key].is_string()) return std::nullopt;
  try {
    return base64_decode(secret->second[key].get<std::string>(), Base64::kStandard);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

}  // namespace

void set_condition(json& conditions, const std::string& type, bool status, const std::string& reason, const std::string& message,
                   int64_t generation, const std::string& now) {
  if (!conditions.is_array()) conditions = json::array();
  const std::string value = status ? "True" : "False";
  for (auto& c : conditions) {
    if (c.value("type", "") != type) continue;
    if (c.value("status", "") != value) c["lastTransitionTime"] = now;
    c["status"] = value;
    c["reason"] = reason;
    c["message"] = message;
    c["observedGeneration"] = generation;
    return;
  }
  conditions.push_back({{"type", type}, {"status", value}, {"reason", reason}, {"message", message},
                        {"observedGeneration", generation}, {"lastTransitionTime", now}});
}

StatusReader http_status_reader() {
  return [](const std::string& ip, int port) -> std::optional<json> {
    try {
      const HttpResponse resp = http_get(ip, port, "/status", kMaxStatusBytes, std::chrono::seconds(2));
      if (resp.status != 200) return std::nullopt;
      return json::parse(resp.body);
    } catch (const std::exception& e) {
      log_warn("status_unavailable", {kv("address", ip + ":" + std::to_string(port)), kv("error", e.what())});
      return std::nullopt;
    }
  };
}

struct Reconciler::Context {
  json run;
  std::string ns, name;
  int64_t generation = 0;
  FederationSpec spec;
  json status;
  json original_status;
  std::string now;
  std::vector<json> pods;
  milliseconds requeue{0};
  std::vector<std::tuple<std::string, std::string, std::string>> events;  // type, reason, message

  std::optional<json> pod(const std::string& pod_name) const {
    for (const auto& p : pods)
      if (p["metadata"].value("name", "") == pod_name) return p;
    return std::nullopt;
  }
  void requeue_within(milliseconds d) {
    if (d.count() <= 0) d = milliseconds(1);
    if (requeue.count() == 0 || d < requeue) requeue = d;
  }
  void warn(const std::string& reason, const std::string& message) { events.emplace_back("Warning", reason, message); }
  void note(const std::string& reason, const std::string& message) { events.emplace_back("Normal", reason, message); }
};

Reconciler::Reconciler(kube::KubeClient& client, OperatorSettings settings, OperatorMetrics& metrics, kube::Informer& runs,
                       kube::Informer& pods, StatusReader read_aggregator_status)
    : client_(client),
      settings_(std::move(settings)),
      metrics_(metrics),
      runs_(runs),
      pods_(pods),
      read_aggregator_status_(std::move(read_aggregator_status)) {}

milliseconds Reconciler::reconcile(const std::string& key) {
  const auto slash = key.find('/');
  const std::string ns = key.substr(0, slash), name = key.substr(slash + 1);
  auto cached = runs_.get(ns, name);
  if (!cached) {
    written_.forget(key);
    children_.forget(key);
    return milliseconds(0);  // deleted: its children go with it (ownerReferences)
  }
  if (cached->at("metadata").contains("deletionTimestamp")) return milliseconds(0);
  Context c;
  c.run = written_.freshest(*cached);
  c.ns = ns;
  c.name = name;
  c.generation = c.run["metadata"].value("generation", 1);
  c.status = c.run.value("status", json::object());
  c.original_status = c.status;
  c.now = kube::rfc3339_now();
  c.pods = pods_.by_index(key);
  const auto requeue = reconcile_run(c);
  write_status(c);
  for (const auto& [type, reason, message] : c.events) record_event(client_, c.run, "FederationRun", type, reason, message);
  return requeue;
}

milliseconds Reconciler::reconcile_run(Context& c) {
  auto& st = c.status;
  st["observedGeneration"] = c.generation;
  if (!st.contains("phase")) st["phase"] = kPhasePending;
  if (!st.contains("conditions")) st["conditions"] = json::array();

  // The spec: the same parser and validation as `zk0 run` and the binaries in the pods.
  try {
    json doc = {{"apiVersion", "zk0.io/v1alpha1"},
                {"kind", "FederationRun"},
                {"metadata", {{"name", c.name}, {"namespace", c.ns}}},
                {"spec", c.run.value("spec", json::object())}};
    c.spec = parse_spec(doc.dump());
  } catch (const SpecError& e) {
    if (st.value("phase", "") != kPhaseFailed) c.warn("InvalidSpec", e.what());
    st["phase"] = kPhaseFailed;
    st["message"] = e.what();
    if (!st.contains("completionTime")) st["completionTime"] = c.now;
    set_condition(st["conditions"], "Failed", true, "InvalidSpec", e.what(), c.generation, c.now);
    set_condition(st["conditions"], "Ready", false, "InvalidSpec", "the spec is invalid", c.generation, c.now);
    return milliseconds(0);
  }
  const auto& policy = c.spec.run_policy;
  st["rounds"] = c.spec.rounds;

  if (is_terminal(st.value("phase", ""))) {
    delete_pods(c, true);
    if (policy.ttl_seconds_after_finished >= 0 && st.contains("completionTime")) {
      const auto expires = kube::parse_rfc3339(st["completionTime"].get<std::string>()) + std::chrono::seconds(policy.ttl_seconds_after_finished);
      const auto left = std::chrono::duration_cast<milliseconds>(expires - Clock::now());
      if (left.count() <= 0) {
        log_info("run_expired", {kv("run", c.ns + "/" + c.name), kv("ttl_seconds", policy.ttl_seconds_after_finished)});
        remove_if_present(runs_path(c.ns) + "/" + c.name);
        return milliseconds(0);
      }
      c.requeue_within(left + milliseconds(100));
    }
    return c.requeue;
  }

  if (policy.suspend) {
    delete_pods(c, false);  // finished pods too: a resumed run starts every member afresh
    if (st.value("phase", "") != kPhaseSuspended) c.note("Suspended", "pods deleted; checkpoints kept on " + claim_name(c.name));
    // Members stopped by the suspension are not failures: after resuming, each starts again.
    const auto suspend_member = [](json& record) {
      if (record.value("state", "") == "Excluded") return;
      record["state"] = "Suspended";
      record["podPhase"] = "";
    };
    if (st.contains("aggregator")) suspend_member(st["aggregator"]);
    if (st.contains("clients"))
      for (auto& record : st["clients"]) suspend_member(record);
    st["phase"] = kPhaseSuspended;
    set_condition(st["conditions"], "Suspended", true, "Suspended", "spec.runPolicy.suspend is true", c.generation, c.now);
    set_condition(st["conditions"], "Running", false, "Suspended", "suspended", c.generation, c.now);
    set_condition(st["conditions"], "Ready", false, "Suspended", "suspended", c.generation, c.now);
    return milliseconds(0);
  }
  if (st.value("phase", "") == kPhaseSuspended) {
    c.note("Resumed", "the aggregator resumes from its last checkpoint");
    st["phase"] = kPhasePending;
  }
  set_condition(st["conditions"], "Suspended", false, st.contains("startTime") ? "Resumed" : "NotSuspended", "", c.generation, c.now);

  if (!st.contains("startTime")) st["startTime"] = c.now;
  if (policy.active_deadline_seconds > 0) {
    const auto deadline = kube::parse_rfc3339(st["startTime"].get<std::string>()) + std::chrono::seconds(policy.active_deadline_seconds);
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      finish(c, kPhaseFailed, "DeadlineExceeded",
             "the run exceeded spec.runPolicy.activeDeadlineSeconds (" + std::to_string(policy.active_deadline_seconds) + " s)");
      return milliseconds(0);
    }
    c.requeue_within(left + milliseconds(100));
  }

  // What only this cluster's settings forbid (a host path outside the allowed prefixes) fails the
  // run as an invalid spec would: nothing changes until the spec does.
  if (const auto problems = cluster_problems(c.spec, settings_); !problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    finish(c, kPhaseFailed, "Forbidden", message);
    return milliseconds(0);
  }

  // Secrets the pods mount: without them pods would hang in ContainerCreating, so wait visibly.
  // The checkpoint key is the operator's own to make.
  const RunSecrets secrets = run_secrets(c.spec, settings_);
  if (secrets.checkpoint_key_generated)
    ensure_made_once(c, checkpoint_key_secret(c.run), "created Secret " + secrets.checkpoint_key + " with the key that signs this run's checkpoints");
  if (!secrets.join_key.empty())
    ensure_made_once(c, join_key_secret(c.run), "created Secret " + secrets.join_key + " with the key that signs this run's join tokens");
  // Each Secret is read once per pass; what the join tokens need comes from the same reads.
  std::string missing, incomplete;
  std::map<std::string, json> held;
  for (const auto& [name, keys] : secrets.required_keys()) {
    const auto secret = get_if_present(core_path(c.ns, "secrets") + "/" + name);
    if (!secret) {
      missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    const json& data = held[name] = secret->value("data", json::object());
    std::string lacking;
    for (const auto& k : keys)
      if (!data.contains(k)) lacking += (lacking.empty() ? "" : ", ") + k;
    if (!lacking.empty()) incomplete += (incomplete.empty() ? "" : "; ") + name + " lacks key " + lacking;
  }
  if (!missing.empty()) return wait_for_missing(c, "SecretMissing", "waiting for Secret " + missing + " in namespace " + c.ns);
  if (!incomplete.empty()) return wait_for_missing(c, "SecretInvalid", "waiting for Secret " + incomplete + " (namespace " + c.ns + ")");
  // Dataset claims likewise: a pod on a missing claim stays Pending with no word to the run.
  for (const auto& [claim, field] : dataset_claims(c.spec))
    if (!exists(core_path(c.ns, "persistentvolumeclaims") + "/" + claim)) missing += (missing.empty() ? "" : ", ") + claim + " (" + field + ")";
  if (!missing.empty())
    return wait_for_missing(c, "ClaimMissing", "waiting for PersistentVolumeClaim " + missing + " in namespace " + c.ns);
  if (c.spec.has_remote_clients())
    if (const auto wait = issue_join_tokens(c, secrets, held)) return *wait;

  ensure_owned_objects(c);

  // The aggregator first: without it no client can do anything.
  if (!st.contains("aggregator")) st["aggregator"] = json::object();
  const auto aggregator = c.pod(aggregator_name(c.name));
  reconcile_member(c, st["aggregator"], aggregator_name(c.name), aggregator,
                   [&](int attempt) { return aggregator_pod(c.run, c.spec, settings_, attempt); }, "aggregator");
  const std::string aggregator_state = st["aggregator"].value("state", "");
  if (aggregator_state == "Failed") {
    finish(c, kPhaseFailed, st["aggregator"].value("reason", "AggregatorFailed"), st["aggregator"].value("message", "the aggregator failed"));
    return c.requeue;
  }
  if (aggregator_state == "Succeeded") {
    read_aggregator(c, aggregator);
    finish(c, kPhaseSucceeded, "RoundsCompleted", "all " + std::to_string(c.spec.rounds) + " rounds completed");
    return c.requeue;
  }

  // Clients: status.clients keeps one record per client, in the spec's order.
  json previous = st.value("clients", json::array());
  json clients = json::array();
  int usable = 0, running = 0;
  for (const auto& client : c.spec.clients) {
    json record = {{"name", client.name}};
    for (const auto& p : previous)
      if (p.value("name", "") == client.name) record = p;
    if (client.remote) {
      // No pod: its owner runs it. It counts towards the quorum as the aggregator sees it.
      record["remote"] = true;
      record["state"] = record.value("joined", false) ? "Joined" : "Joining";
      ++usable;
      clients.push_back(record);
      continue;
    }
    const std::string pod_name = worker_name(c.name, client.name);
    reconcile_member(c, record, pod_name, c.pod(pod_name),
                     [&](int attempt) { return worker_pod(c.run, c.spec, client, settings_, attempt); }, "client " + client.name);
    const std::string state = record.value("state", "");
    usable += state != "Excluded";
    running += state == "Running";
    clients.push_back(record);
  }
  st["clients"] = clients;
  report_pods_ready(c);
  if (usable < c.spec.strategy.min_fit_clients) {
    const std::string message = std::to_string(usable) + " clients left, fewer than strategy.minFitClients (" +
                                std::to_string(c.spec.strategy.min_fit_clients) + ")";
    set_condition(st["conditions"], "QuorumLost", true, "ClientsExcluded", message, c.generation, c.now);
    finish(c, kPhaseFailed, "QuorumLost", message);
    return c.requeue;
  }
  set_condition(st["conditions"], "QuorumLost", false, "QuorumHolds",
                std::to_string(usable) + " of " + std::to_string(c.spec.clients.size()) + " clients usable", c.generation, c.now);

  const bool aggregator_running = aggregator_state == "Running";
  st["readyClients"] = running;
  if (aggregator_running) read_aggregator(c, aggregator);
  if (c.spec.has_remote_clients()) {
    report_join_endpoint(c, aggregator);
    for (const auto& record : st["clients"]) {
      if (!record.value("joined", false)) continue;
      bool was_joined = false;
      for (const auto& p : previous)
        if (p.value("name", "") == record.value("name", "")) was_joined = p.value("joined", false);
      if (!was_joined) c.note("ClientJoined", "remote client " + record.value("name", "") + " joined the run");
    }
  }
  const int ready = st.value("readyClients", 0);
  st["phase"] = aggregator_running ? kPhaseRunning : kPhasePending;
  set_condition(st["conditions"], "Running", aggregator_running, aggregator_running ? "AggregatorRunning" : "AggregatorPending",
                aggregator_running ? "round " + std::to_string(st.value("currentRound", 0)) + " of " + std::to_string(c.spec.rounds)
                                   : "waiting for the aggregator pod",
                c.generation, c.now);
  const bool is_ready = aggregator_running && ready >= c.spec.strategy.min_available_clients;
  set_condition(st["conditions"], "Ready", is_ready, is_ready ? "QuorumAvailable" : (aggregator_running ? "WaitingForClients" : "WaitingForAggregator"),
                std::to_string(ready) + " clients ready, " + std::to_string(c.spec.strategy.min_available_clients) + " needed",
                c.generation, c.now);
  set_condition(st["conditions"], "Succeeded", false, "Running", "", c.generation, c.now);
  set_condition(st["conditions"], "Failed", false, "Running", "", c.generation, c.now);
  // Rounds advance inside the aggregator; look again while it runs.
  if (aggregator_running) c.requeue_within(std::chrono::seconds(10));
  return c.requeue;
}

void Reconciler::ensure_owned_objects(Context& c) {
  const auto apply = [&](const std::string& collection, const json& object) {
    children_.apply(client_, c.ns + "/" + c.name, collection + "/" + object["metadata"]["name"].get<std::string>(), object);
  };
  apply(core_path(c.ns, "configmaps"), spec_config_map(c.run, c.spec, settings_));
  apply(core_path(c.ns, "persistentvolumeclaims"), checkpoint_claim(c.run, c.spec));
  apply(core_path(c.ns, "services"), aggregator_service(c.run, settings_));
  apply("/apis/networking.k8s.io/v1/namespaces/" + c.ns + "/networkpolicies", aggregator_network_policy(c.run, c.spec, settings_));
  if (c.spec.has_remote_clients()) apply(core_path(c.ns, "services"), remote_aggregator_service(c.run, c.spec, settings_));
  apply("/apis/networking.k8s.io/v1/namespaces/" + c.ns + "/networkpolicies", worker_network_policy(c.run, settings_));
  if (!c.status.contains("childrenCreated")) {
    c.status["childrenCreated"] = true;
    int pods = 0;
    for (const auto& client : c.spec.clients) pods += !client.remote;
    c.note("Created", "created ConfigMap " + config_map_name(c.name) + ", PVC " + claim_name(c.name) + ", Service and NetworkPolicy " +
                          aggregator_name(c.name) + (c.spec.has_remote_clients() ? ", Service " + remote_service_name(c.name) : "") +
                          "; starting the aggregator and " + std::to_string(pods) + " workers");
  }
}

void Reconciler::reconcile_member(Context& c, json& record, const std::string& pod_name, const std::optional<json>& pod,
                                  const std::function<json(int attempt)>& desired_pod, const std::string& member) {
  const int limit = c.spec.run_policy.backoff_limit;
  const bool is_aggregator = member == "aggregator";
  const std::string state = record.value("state", "");
  const auto remove_pod = [&] { remove_if_present(core_path(c.ns, "pods") + "/" + pod_name); };
  if (state == "Excluded" || state == "Failed") {
    if (pod && (pod_phase(*pod) == "Pending" || pod_phase(*pod) == "Running")) remove_pod();
    return;
  }
  if (!pod) {
    if (state == "Succeeded") return;
    const int attempt = record.value("attempts", 0) + 1;
    try {
      client_.create(core_path(c.ns, "pods"), desired_pod(attempt));
      record["attempts"] = attempt;
    } catch (const kube::ApiError& e) {
      if (!e.conflict()) throw;  // already there: the informer has not shown it yet
    }
    record["state"] = "Pending";
    record["podPhase"] = "Pending";
    return;
  }
  const std::string phase = pod_phase(*pod);
  const int restarts = restarts_of(*pod);
  record["podPhase"] = phase;
  record["restarts"] = record.value("restartsBefore", 0) + restarts;
  if (pod->at("metadata").contains("annotations")) {
    try {
      record["attempts"] = std::max(record.value("attempts", 0), std::stoi(pod->at("metadata")["annotations"].value(kAttemptAnnotation, "0")));
    } catch (const std::exception&) {
    }
  }
  if (phase == "Succeeded") {
    record["state"] = "Succeeded";
    return;
  }
  // A pod deleted by someone else (kubectl, a drain, an eviction) has not failed: it ends as
  // SIGTERM makes it end, and the next attempt starts once it is gone, costing no retry.
  if (pod->at("metadata").contains("deletionTimestamp") && record.value("lastFailedPod", "") != pod->at("metadata").value("uid", "")) {
    record["state"] = "Restarting";
    return;
  }
  const std::string uid = pod->at("metadata").value("uid", "");
  if (phase == "Failed") {
    const auto termination = termination_of(*pod);
    const int exit_code = termination ? termination->exit_code : -1;
    std::string why = termination ? (termination->reason.empty() ? "exit code " + std::to_string(exit_code)
                                                                 : termination->reason + ", exit code " + std::to_string(exit_code))
                                  : pod->value("status", json::object()).value("reason", "pod failed");
    if (termination && !last_words(termination->message).empty()) why += ": " + last_words(termination->message);
    if (record.value("lastFailedPod", "") != uid) {  // count each failed pod once
      record["lastFailedPod"] = uid;
      record["failures"] = record.value("failures", 0) + 1;
      record["restartsBefore"] = record.value("restartsBefore", 0) + restarts;
      record["message"] = why;
      c.warn(is_aggregator ? "AggregatorPodFailed" : "ClientPodFailed", member + ": pod " + pod_name + " failed (" + why + ")");
    }
    const int used = record.value("failures", 0) + record.value("restartsBefore", 0);
    const bool final_exit = exit_code == kExitInvalidInput || exit_code == kExitRunFailed;
    if (final_exit || used > limit) {
      const std::string reason = final_exit ? (exit_code == kExitRunFailed ? "RunFailed" : "InvalidInput") : "BackoffLimitExceeded";
      record["state"] = is_aggregator ? "Failed" : "Excluded";
      record["reason"] = reason;
      record["message"] = member + ": " + why + (final_exit ? "; not retried" : "; " + std::to_string(used) + " failures exceed backoffLimit " + std::to_string(limit));
      if (!is_aggregator) c.warn("ClientExcluded", record["message"].get<std::string>());
      return;  // the failed pod stays for its logs
    }
    record["state"] = "Restarting";
    remove_pod();  // its deletion event brings the next reconcile, which creates the next attempt
    return;
  }
  // Container restarts in place (a pod override may set restartPolicy) count as well.
  const int used = record.value("failures", 0) + record.value("restartsBefore", 0) + restarts;
  if (used > limit) {
    record["state"] = is_aggregator ? "Failed" : "Excluded";
    record["reason"] = "BackoffLimitExceeded";
    record["message"] = member + ": " + std::to_string(used) + " failures and restarts exceed backoffLimit " + std::to_string(limit);
    if (!is_aggregator) c.warn("ClientExcluded", record["message"].get<std::string>());
    remove_pod();
    return;
  }
  record["state"] = phase;  // Pending or Running
}

std::optional<std::string> merge_aggregator_status(json& st, const json& reported, const FederationSpec& spec) {
  // The aggregator's pod runs the run author's image and data: take from its answer only values of
  // the documented shape, so that nothing it says can bloat or break the run's status.
  const auto integer_in = [&](const char* key, int lo, int hi) -> std::optional<int> {
    if (!reported.contains(key) || !reported[key].is_number_integer()) return std::nullopt;
    const int64_t v = reported[key].get<int64_t>();
    return v < lo || v > hi ? std::nullopt : std::optional<int>(static_cast<int>(v));
  };
  const auto number = [](const json& j, const char* key) -> std::optional<double> {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
    const double v = j[key].get<double>();
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
  };
  if (!reported.is_object()) return std::nullopt;
  const int previous = st.value("currentRound", 0);
  const int round = integer_in("round", 0, spec.rounds).value_or(previous);
  st["currentRound"] = round;
  st["readyClients"] = integer_in("ready_clients", 0, static_cast<int>(spec.clients.size())).value_or(st.value("readyClients", 0));
  const auto loss = number(reported, "last_server_eval_loss");
  if (loss) st["serverEvalLoss"] = *loss;
  // Each evaluation set's latest loss, for the sets the spec names (in its order).
  const auto losses_reported = reported.find("evaluation_losses");
  if (losses_reported != reported.end() && losses_reported->is_object()) {
    json sets = json::array();
    for (const auto& set : spec.evaluation.sets)
      if (const auto v = number(*losses_reported, set.name.c_str())) sets.push_back({{"name", set.name}, {"loss", *v}});
    if (!sets.empty()) st["evaluationSets"] = sets;
  }
  if (const auto epsilon = number(reported, "privacy_epsilon"); epsilon && *epsilon >= 0) st["privacyEpsilon"] = *epsilon;
  static const std::set<std::string> kStates = {"registered", "idle",     "downloading", "training",
                                                 "uploading",  "finished", "failed",      "unreachable"};
  const json clients = reported.contains("clients") && reported["clients"].is_object() ? reported["clients"] : json::object();
  if (!st.contains("clients") || !st["clients"].is_array()) st["clients"] = json::array();
  for (auto& record : st["clients"]) {
    const auto it = clients.find(record.value("name", ""));
    if (it == clients.end() || !it->is_object()) continue;
    if (const auto client_loss = number(*it, "last_loss")) record["lastLoss"] = *client_loss;
    // evaluation.contributionScores: the client's running totals.
    if (it->contains("contribution_score") && (*it)["contribution_score"].is_object()) {
      const json& score = (*it)["contribution_score"];
      if (const auto v = number(score, "first_order")) record["contributionScore"]["firstOrder"] = *v;
      if (const auto v = number(score, "leave_one_out")) record["contributionScore"]["leaveOneOut"] = *v;
    }
    if (it->contains("contribution_score_by_set") && (*it)["contribution_score_by_set"].is_object()) {
      const json& by_set = (*it)["contribution_score_by_set"];
      json scores = json::array();
      for (const auto& set : spec.evaluation.sets) {
        const json score = by_set.value(set.name, json::object());
        json entry = {{"set", set.name}};
        if (const auto v = number(score, "first_order")) entry["firstOrder"] = *v;
        if (const auto v = number(score, "leave_one_out")) entry["leaveOneOut"] = *v;
        if (entry.size() > 1) scores.push_back(entry);
      }
      if (!scores.empty()) record["contributionScoreBySet"] = scores;
    }
    const std::string state = it->contains("state") && (*it)["state"].is_string() ? (*it)["state"].get<std::string>() : "";
    if (kStates.count(state)) record["aggregatorState"] = state;
    if (!record.value("remote", false)) continue;
    // A remote client has joined once the aggregator knows it by more than its name.
    if (kStates.count(state)) {
      record["joined"] = true;
      record["state"] = "Joined";
      record.erase("tokenExpiresAt");
    }
    if (const auto seen = number(*it, "last_seen_unix"); seen && *seen > 0 && *seen < 1e11)
      record["lastSeen"] = kube::rfc3339(Clock::time_point(std::chrono::seconds(static_cast<int64_t>(*seen))));
  }
  if (round <= previous || previous <= 0) return std::nullopt;
  std::string message = "round " + std::to_string(previous) + " of " + std::to_string(spec.rounds) + " completed";
  if (loss) message += "; server eval loss " + std::to_string(*loss);
  if (st.contains("privacyEpsilon")) message += "; privacy epsilon " + std::to_string(st["privacyEpsilon"].get<double>());
  return message;
}

void Reconciler::read_aggregator(Context& c, const std::optional<json>& pod) {
  if (!pod) return;
  // An aggregator that has ended left its last status as its termination message: the run's
  // final round and loss, which no endpoint serves any more.
  if (const auto termination = termination_of(*pod)) {
    json reported;
    try {
      reported = json::parse(termination->message);
    } catch (const json::exception&) {
      return;
    }
    if (const auto completed = merge_aggregator_status(c.status, reported, c.spec)) c.note("RoundCompleted", *completed);
    return;
  }
  const std::string ip = pod->value("status", json::object()).value("podIP", "");
  if (ip.empty()) return;
  const auto s = read_aggregator_status_(ip, settings_.aggregator_metrics_port);
  if (!s) return;
  if (const auto completed = merge_aggregator_status(c.status, *s, c.spec)) c.note("RoundCompleted", *completed);
}

void Reconciler::finish(Context& c, const std::string& phase, const std::string& reason, const std::string& message) {
  auto& st = c.status;
  const bool changed = st.value("phase", "") != phase;
  st["phase"] = phase;
  st["message"] = message;
  if (!st.contains("completionTime")) st["completionTime"] = c.now;
  const bool ok = phase == kPhaseSucceeded;
  set_condition(st["conditions"], "Succeeded", ok, ok ? reason : "Failed", ok ? message : "", c.generation, c.now);
  set_condition(st["conditions"], "Failed", !ok, ok ? "Succeeded" : reason, ok ? "" : message, c.generation, c.now);
  set_condition(st["conditions"], "Running", false, "Finished", message, c.generation, c.now);
  set_condition(st["conditions"], "Ready", false, "Finished", message, c.generation, c.now);
  if (changed) {
    if (ok) c.note("Succeeded", message);
    else c.warn("Failed", reason + ": " + message);
  }
  delete_pods(c, true);
  if (c.spec.run_policy.ttl_seconds_after_finished >= 0)
    c.requeue_within(std::chrono::seconds(c.spec.run_policy.ttl_seconds_after_finished) + milliseconds(100));
}

void Reconciler::report_pods_ready(Context& c) {
  std::string reason, message;
  int starting = 0;
  for (const auto& p : c.pods) {
    if (pod_phase(p) != "Pending" || p["metadata"].contains("deletionTimestamp")) continue;
    const auto blocker = blocker_of(p);
    if (!blocker) {
      ++starting;
      continue;
    }
    if (reason.empty()) reason = blocker->first;
    message += (message.empty() ? "pod " : "; pod ") + p["metadata"].value("name", "") + ": " + blocker->second;
  }
  if (!reason.empty()) {
    // Each new blocker is an event; a pod that stays blocked for the same reason is not.
    set_blocked(c, "PodsReady", reason, message, /*each_message=*/true);
    return;
  }
  set_condition(c.status["conditions"], "PodsReady", starting == 0, starting == 0 ? "PodsRunning" : "PodsStarting",
                starting == 0 ? "" : std::to_string(starting) + " pods starting", c.generation, c.now);
}

void Reconciler::delete_pods(Context& c, bool only_active) {
  for (const auto& p : c.pods) {
    const std::string phase = pod_phase(p);
    if (only_active && phase != "Pending" && phase != "Running") continue;
    if (p["metadata"].contains("deletionTimestamp")) continue;
    remove_if_present(core_path(c.ns, "pods") + "/" + p["metadata"].value("name", ""));
  }
}

void Reconciler::remove_if_present(const std::string& path) {
  try {
    client_.remove(path);
  } catch (const kube::ApiError& e) {
    if (!e.not_found()) throw;  // already gone is what we wanted
  }
}

void Reconciler::ensure_made_once(Context& c, const json& secret, const std::string& note) {
  const std::string path = core_path(c.ns, "secrets") + "/" + secret["metadata"]["name"].get<std::string>();
  if (children_.recorded(c.ns + "/" + c.name, path)) return;
  // Created once and never replaced: a new checkpoint key would orphan every checkpoint the run
  // has, a new token key void every token issued.
  if (!exists(path)) {
    try {
      client_.create(core_path(c.ns, "secrets"), secret);
      c.note("Created", note);
    } catch (const kube::ApiError& e) {
      if (!e.conflict()) throw;
    }
  }
  children_.record(c.ns + "/" + c.name, path);
}

bool Reconciler::exists(const std::string& path) {
  try {
    client_.get_metadata(path);  // metadata only: existence is all that is asked
    return true;
  } catch (const kube::ApiError& e) {
    if (e.not_found()) return false;
    throw;
  }
}

std::optional<json> Reconciler::get_if_present(const std::string& path) {
  try {
    return client_.get(path);
  } catch (const kube::ApiError& e) {
    if (e.not_found()) return std::nullopt;
    throw;
  }
}

std::optional<milliseconds> Reconciler::issue_join_tokens(Context& c, const RunSecrets& secrets, const std::map<std::string, json>& held) {
  auto& st = c.status;
  const std::string secrets_path = core_path(c.ns, "secrets") + "/";
  // A token pins the CA that signed the aggregator's certificate; the aggregator signs joining
  // clients' certificates with the join CA's key. Two different CAs would give owners
  // certificates the aggregator does not trust, so the run waits until they agree.
  const auto server_ca = secret_value(held, secrets.aggregator_tls, "ca.crt");
  const auto join_ca = secret_value(held, secrets.join_ca, "tls.crt");
  const auto token_key = secret_value(held, secrets.join_key, "token.key");
  if (!server_ca || !join_ca || !token_key)
    return wait_for_missing(c, "SecretInvalid", "Secrets " + secrets.aggregator_tls + " (ca.crt), " + secrets.join_ca + " (tls.crt) and " +
                                                    secrets.join_key + " (token.key) must hold base64 values");
  std::string ca_sha256;
  try {
    ca_sha256 = parse_certificate(*server_ca).fingerprint_sha256;
    if (parse_certificate(*join_ca).fingerprint_sha256 != ca_sha256)
      return wait_for_missing(c, "JoinCaMismatch",
                              "Secret " + secrets.join_ca + " (spec.transport.join.caSecret) holds another CA than ca.crt of Secret " +
                                  secrets.aggregator_tls + ": remote clients would get certificates the aggregator does not trust");
  } catch (const std::exception& e) {
    return wait_for_missing(c, "SecretInvalid", "the CA certificates in Secrets " + secrets.aggregator_tls + " and " + secrets.join_ca +
                                                    " do not parse: " + e.what());
  }
  JoinToken claims;
  claims.run = c.name;
  claims.ca_sha256 = ca_sha256;
  claims.server_name = c.spec.transport.tls.server_name.empty() ? aggregator_name(c.name) + "." + c.ns + ".svc"
                                                                 : c.spec.transport.tls.server_name;
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  // A token is renewed in the last tenth of its life (at most a minute): an owner who reads it
  // then still has time to use it.
  const int64_t renew_before = std::min<int64_t>(60, c.spec.transport.join.token_ttl_seconds / 10);
  const std::string tokens_name = join_tokens_secret_name(c.name);
  const auto current = get_if_present(secrets_path + tokens_name);
  const json current_data = current ? current->value("data", json::object()) : json::object();
  const json previous = st.value("clients", json::array());
  std::map<std::string, std::string> tokens;
  std::string minted;
  int64_t next_expiry = 0;
  json expiries = json::object();
  for (const auto& client : c.spec.clients) {
    if (!client.remote) continue;
    bool joined = false;
    for (const auto& p : previous)
      if (p.value("name", "") == client.name) joined = p.value("joined", false);
    if (joined) continue;  // its token is spent
    // Kept while it is valid, for this client, under this CA and name; otherwise a new one.
    std::optional<JoinToken> held;
    std::string token;
    try {
      token = base64_decode(current_data.value(client.name, ""), Base64::kStandard);
      held = verify_join_token(token, *token_key, now + renew_before);
    } catch (const std::exception&) {
    }
    if (!held || held->run != c.name || held->client != client.name || held->ca_sha256 != claims.ca_sha256 ||
        held->server_name != claims.server_name) {
      claims.client = client.name;
      claims.nonce.clear();
      claims.expires_unix = now + c.spec.transport.join.token_ttl_seconds;
      token = mint_join_token(claims, *token_key);
      held = read_join_token(token);
      minted += (minted.empty() ? "" : ", ") + client.name;
    }
    tokens[client.name] = token;
    expiries[client.name] = kube::rfc3339(Clock::time_point(std::chrono::seconds(held->expires_unix)));
    if (!next_expiry || held->expires_unix < next_expiry) next_expiry = held->expires_unix;
  }
  json desired = json::object();
  for (const auto& [client, token] : tokens) desired[client] = base64_encode(token, Base64::kStandard);
  if (!current || desired != current_data) {
    json secret = join_tokens_secret(c.run, {});
    secret.erase("stringData");
    secret["data"] = desired;  // data, not stringData: an apply that leaves a key out removes it
    client_.patch(secrets_path + tokens_name, secret, kube::PatchType::Apply);
  }
  if (!minted.empty())
    c.note("JoinTokensIssued", "join tokens for " + minted + " in Secret " + tokens_name + ", valid for " +
                                   std::to_string(c.spec.transport.join.token_ttl_seconds) + " s: kubectl get secret " + tokens_name +
                                   " -o jsonpath='{.data.CLIENT}' | base64 -d");
  st["joinTokensSecret"] = tokens_name;
  // Where each remote client that has not joined stands; the clients loop keeps these records.
  json clients = st.value("clients", json::array());
  for (const auto& client : c.spec.clients) {
    if (!client.remote || !expiries.contains(client.name)) continue;
    bool found = false;
    for (auto& record : clients)
      if (record.value("name", "") == client.name) {
        record["tokenExpiresAt"] = expiries[client.name];
        found = true;
      }
    if (!found) clients.push_back({{"name", client.name}, {"remote", true}, {"tokenExpiresAt", expiries[client.name]}});
  }
  st["clients"] = clients;
  if (next_expiry) c.requeue_within(std::chrono::seconds(std::max<int64_t>(1, next_expiry - now - renew_before)));
  return std::nullopt;
}

void Reconciler::report_join_endpoint(Context& c, const std::optional<json>& aggregator) {
  const auto& expose = c.spec.transport.expose;
  std::string endpoint = expose.address;
  if (endpoint.empty()) {
    // Where owners can dial: the load balancer's address, or the node port on the node the
    // aggregator runs on (any node would do; this one is known without reading nodes).
    const auto service = get_if_present(core_path(c.ns, "services") + "/" + remote_service_name(c.name));
    if (!service) return;
    const json ports = (*service)["spec"].value("ports", json::array());
    if (expose.type == ExposeType::kLoadBalancer) {
      const json ingress = service->value("status", json::object()).value("loadBalancer", json::object()).value("ingress", json::array());
      if (!ingress.empty()) {
        const std::string host = ingress[0].value("hostname", ingress[0].value("ip", ""));
        if (!host.empty()) endpoint = host + ":" + std::to_string(settings_.grpc_port);
      }
    } else if (aggregator && !ports.empty() && ports[0].value("nodePort", 0) > 0) {
      const std::string node = aggregator->value("status", json::object()).value("hostIP", "");
      if (!node.empty()) endpoint = node + ":" + std::to_string(ports[0]["nodePort"].get<int>());
    }
  }
  if (endpoint.empty()) return;  // not known yet: the status keeps what it said
  if (c.status.value("joinEndpoint", "") != endpoint) c.note("JoinEndpoint", "remote clients join at " + endpoint);
  c.status["joinEndpoint"] = endpoint;
}

void Reconciler::set_blocked(Context& c, const std::string& type, const std::string& reason, const std::string& message,
                             bool each_message) {
  auto& conditions = c.status["conditions"];
  bool said = false;
  for (const auto& cond : conditions)
    if (cond.value("type", "") == type && cond.value("status", "") == "False" && cond.value("reason", "") == reason &&
        (!each_message || cond.value("message", "") == message))
      said = true;
  if (!said) c.warn(reason, message);
  set_condition(conditions, type, false, reason, message, c.generation, c.now);
}

milliseconds Reconciler::wait_for_missing(Context& c, const std::string& reason, const std::string& message) {
  // While the list of what is missing shrinks, the condition follows it without a new event.
  set_blocked(c, "Ready", reason, message, /*each_message=*/false);
  c.requeue_within(std::chrono::seconds(10));
  return c.requeue;
}

void Reconciler::write_status(Context& c) {
  if (c.status == c.original_status) return;
  const json patch = {{"status", c.status}};
  const json updated = client_.patch(runs_path(c.ns) + "/" + c.name + "/status", patch, kube::PatchType::Merge);
  written_.wrote(c.ns + "/" + c.name, updated);
}

}  // namespace zk0::op
