#include "operator/membership_reconciler.h"

#include <cmath>

#include "core/security/join_token.h"
#include "core/spec/membership_spec.h"
#include "core/util/base64.h"
#include "core/util/exit_codes.h"
#include "core/util/log.h"
#include "operator/events.h"
#include "operator/kube/time_format.h"
#include "operator/pod_status.h"

namespace zk0::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr auto kLookAgain = std::chrono::seconds(10);

struct Event {
  std::string type, reason, message;
};

std::string core_path(const std::string& ns, const std::string& plural) { return "/api/v1/namespaces/" + ns + "/" + plural; }

}  // namespace

std::string owner_key_of_pod(const json& pod) {
  const auto& m = pod.at("metadata");
  const json labels = m.value("labels", json::object());
  if (const std::string run = labels.value(labels::kRun, ""); !run.empty()) return m.value("namespace", "") + "/" + run;
  if (const std::string membership = labels.value(labels::kMembership, ""); !membership.empty())
    return std::string(kMembershipKeyPrefix) + m.value("namespace", "") + "/" + membership;
  return "";
}

MembershipReconciler::MembershipReconciler(kube::KubeClient& client, OperatorSettings settings, kube::Informer& memberships,
                                           kube::Informer& pods, StatusReader read_worker_status)
    : client_(client),
      settings_(std::move(settings)),
      memberships_(memberships),
      pods_(pods),
      read_worker_status_(std::move(read_worker_status)) {}

milliseconds MembershipReconciler::reconcile(const std::string& key) {
  const auto slash = key.find('/');
  const std::string ns = key.substr(0, slash), name = key.substr(slash + 1);
  const auto cached = memberships_.get(ns, name);
  if (!cached) {
    written_.forget(key);
    children_.forget(key);
    return milliseconds(0);  // deleted: its children go with it (ownerReferences)
  }
  if (cached->at("metadata").contains("deletionTimestamp")) return milliseconds(0);
  const json membership = written_.freshest(*cached);
  const int64_t generation = membership["metadata"].value("generation", 1);
  json st = membership.value("status", json::object());
  const json original = st;
  const std::string now = kube::rfc3339_now();
  std::vector<Event> events;
  milliseconds requeue{0};
  st["observedGeneration"] = generation;
  if (!st.contains("phase")) st["phase"] = "Pending";
  if (!st.contains("conditions")) st["conditions"] = json::array();

  const auto ready = [&](bool ok, const std::string& reason, const std::string& message) {
    set_condition(st["conditions"], "Ready", ok, reason, message, generation, now);
  };
  // Waiting for what the owner must provide: a Warning the first time, then a look every 10 s.
  const auto wait_for = [&](const std::string& reason, const std::string& message) {
    bool said = false;
    for (const auto& c : st["conditions"])
      if (c.value("type", "") == "Ready" && c.value("reason", "") == reason) said = true;
    if (!said) events.push_back({"Warning", reason, message});
    ready(false, reason, message);
    st["message"] = message;
    requeue = kLookAgain;
  };
  const auto finish = [&](const std::string& phase, const std::string& reason, const std::string& message) {
    if (st.value("phase", "") != phase) events.push_back({phase == "Succeeded" ? "Normal" : "Warning", phase, reason + ": " + message});
    st["phase"] = phase;
    st["message"] = message;
    ready(false, reason, message);
    set_condition(st["conditions"], phase == "Succeeded" ? "Succeeded" : "Failed", true, reason, message, generation, now);
  };
  const auto write = [&] {
    if (st != original) {
      const json updated = client_.patch(std::string(kPath) + "/namespaces/" + ns + "/federationmemberships/" + name + "/status",
                                         {{"status", st}}, kube::PatchType::Merge);
      written_.wrote(key, updated);
    }
    for (const auto& e : events) record_event(client_, membership, "FederationMembership", e.type, e.reason, e.message);
  };
  const std::string phase = st.value("phase", "");
  if (phase == "Succeeded" || phase == "Failed") {
    write();
    return milliseconds(0);
  }

  MembershipSpec spec;
  try {
    const json doc = {{"apiVersion", "zk0.io/v1alpha1"},
                      {"kind", "FederationMembership"},
                      {"metadata", {{"name", name}, {"namespace", ns}}},
                      {"spec", membership.value("spec", json::object())}};
    spec = parse_membership(doc.dump());
    if (const auto problems = membership_problems(spec, settings_); !problems.empty()) throw SpecError(problems);
  } catch (const SpecError& e) {
    finish("Failed", "InvalidSpec", e.what());
    write();
    return milliseconds(0);
  }

  // The join token: the run and client it names go into the status before the pod starts.
  std::optional<std::string> token;
  try {
    const json secret = client_.get(core_path(ns, "secrets") + "/" + spec.token_secret.name);
    const json data = secret.value("data", json::object());
    if (data.contains(spec.token_secret.key) && data[spec.token_secret.key].is_string())
      token = base64_decode(data[spec.token_secret.key].get<std::string>(), Base64::kStandard);
  } catch (const kube::ApiError& e) {
    if (!e.not_found()) throw;
  } catch (const std::invalid_argument&) {
  }
  if (!token) {
    wait_for("SecretMissing", "waiting for Secret " + spec.token_secret.name + " with key " + spec.token_secret.key +
                                  " in namespace " + ns + " (spec.tokenSecret): the join token the run's owner handed over");
    write();
    return requeue;
  }
  try {
    while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) token->pop_back();
    const JoinToken claims = read_join_token(*token);
    st["run"] = claims.run;
    st["client"] = claims.client;
  } catch (const JoinTokenError& e) {
    wait_for("TokenInvalid", "Secret " + spec.token_secret.name + " key " + spec.token_secret.key + ": " + e.what());
    write();
    return requeue;
  }
  if (spec.dataset.volume_claim) {
    try {
      client_.get_metadata(core_path(ns, "persistentvolumeclaims") + "/" + spec.dataset.volume_claim->claim_name);
    } catch (const kube::ApiError& e) {
      if (!e.not_found()) throw;
      wait_for("ClaimMissing", "waiting for PersistentVolumeClaim " + spec.dataset.volume_claim->claim_name +
                                   " (spec.dataset.volumeClaim) in namespace " + ns);
      write();
      return requeue;
    }
  }

  // The state claim and the NetworkPolicy (server-side apply, when changed or stale).
  for (const auto& [collection, object] :
       {std::pair<std::string, json>{core_path(ns, "persistentvolumeclaims"), membership_state_claim(membership, spec)},
        std::pair<std::string, json>{"/apis/networking.k8s.io/v1/namespaces/" + ns + "/networkpolicies",
                                     membership_network_policy(membership, settings_)}})
    children_.apply(client_, key, collection + "/" + object["metadata"]["name"].get<std::string>(), object);

  // The worker pod: created, observed, replaced when it failed.
  const std::string pod_name = membership_worker_name(name);
  std::optional<json> pod;
  for (const auto& p : pods_.by_index(std::string(kMembershipKeyPrefix) + key))
    if (p["metadata"].value("name", "") == pod_name) pod = p;
  if (!pod) {
    const int attempt = st.value("attempts", 0) + 1;
    try {
      client_.create(core_path(ns, "pods"), membership_pod(membership, spec, settings_, attempt));
      st["attempts"] = attempt;
      if (attempt == 1) events.push_back({"Normal", "Created", "created PVC " + membership_state_claim_name(name) + " and pod " + pod_name +
                                                                  ", which joins run " + st.value("run", "") + " at " + spec.endpoint +
                                                                  " as " + st.value("client", "")});
    } catch (const kube::ApiError& e) {
      if (!e.conflict()) throw;
    }
    st["podPhase"] = "Pending";
    ready(false, "PodPending", "the worker pod is starting");
    write();
    return kLookAgain;
  }
  // What the worker says of its part (worker/contribution.h), each value only in its documented
  // shape: its /status while it runs, its termination message once it finished.
  const auto take_contribution = [&](const json& reported) {
    if (!reported.is_object() || reported.value("client", "") != st.value("client", "")) return false;
    for (const auto& [from, to] : {std::pair<const char*, const char*>{"round", "round"}, {"rounds", "rounds"},
                                   {"rounds_trained", "roundsTrained"}, {"updates_uploaded", "updatesUploaded"},
                                   {"samples_trained", "samplesTrained"}})
      if (reported.contains(from) && reported[from].is_number_integer() && reported[from].get<int64_t>() >= 0) st[to] = reported[from];
    if (reported.contains("last_loss") && reported["last_loss"].is_number() && std::isfinite(reported["last_loss"].get<double>()))
      st["lastLoss"] = reported["last_loss"];
    if (reported.contains("state") && reported["state"].is_string() && reported["state"].get<std::string>().size() <= 32)
      st["workerState"] = reported["state"];
    return true;
  };
  const std::string pod_phase_now = pod_phase(*pod);
  st["podPhase"] = pod_phase_now;
  if (pod_phase_now == "Succeeded") {
    if (const auto termination = termination_of(*pod)) try {
        take_contribution(json::parse(termination->message));
      } catch (const json::exception&) {
      }
    finish("Succeeded", "RunCompleted", "run " + st.value("run", "") + " completed; " + std::to_string(st.value("updatesUploaded", 0)) +
                                            " updates delivered");
    write();
    return milliseconds(0);
  }
  if (pod_phase_now == "Failed") {
    const std::string uid = pod->at("metadata").value("uid", "");
    const auto termination = termination_of(*pod);
    const int exit_code = termination ? termination->exit_code : -1;
    std::string why = termination ? "exit code " + std::to_string(exit_code) : pod->value("status", json::object()).value("reason", "pod failed");
    if (termination && !last_words(termination->message).empty()) why += ": " + last_words(termination->message);
    if (st.value("lastFailedPod", "") != uid) {  // each failed pod once
      st["lastFailedPod"] = uid;
      st["failures"] = st.value("failures", 0) + 1;
      events.push_back({"Warning", "PodFailed", "pod " + pod_name + " failed (" + why + ")"});
    }
    // Exit code 2: the join was refused or the dataset or device cannot be used; another pod
    // would meet the same answer.
    if (exit_code == kExitInvalidInput) {
      finish("Failed", "InvalidInput", why + "; not retried");
      write();
      return milliseconds(0);
    }
    if (st.value("failures", 0) > kBackoffLimit) {
      finish("Failed", "BackoffLimitExceeded", why + "; " + std::to_string(st.value("failures", 0)) + " failed pods");
      write();
      return milliseconds(0);
    }
    try {
      client_.remove(core_path(ns, "pods") + "/" + pod_name);  // its deletion brings the next attempt
    } catch (const kube::ApiError& e) {
      if (!e.not_found()) throw;
    }
    st["message"] = "restarting the worker: " + why;
    write();
    return milliseconds(0);
  }
  if (pod_phase_now == "Pending") {
    const auto blocker = blocker_of(*pod);
    if (blocker) wait_for(blocker->first, "pod " + pod_name + ": " + blocker->second);
    else ready(false, "PodPending", "the worker pod is starting");
    write();
    return kLookAgain;
  }

  // Running: joined once the worker answers for the client its token names.
  const std::string ip = pod->value("status", json::object()).value("podIP", "");
  const auto reported = ip.empty() ? std::nullopt : read_worker_status_(ip, settings_.worker_metrics_port);
  if (reported && take_contribution(*reported)) {
    if (st.value("phase", "") != "Running")
      events.push_back({"Normal", "Joined", "joined run " + st.value("run", "") + " as " + st.value("client", "")});
    st["phase"] = "Running";
    st.erase("message");
    ready(true, "Joined", "training for run " + st.value("run", "") + " as " + st.value("client", ""));
  } else {
    st["phase"] = "Joining";
    ready(false, "Joining", "the worker is joining run " + st.value("run", "") + " at " + spec.endpoint);
  }
  write();
  return kLookAgain;
}

}  // namespace zk0::op
