// zk0-operator: reconciles FederationRuns (zk0.io/v1alpha1) into an aggregator pod, one worker
// pod per client dataset and their ConfigMap, Service and checkpoint claim; and
// FederationMemberships (an owner's cluster in a run hosted elsewhere) into one joining worker.
//
//   zk0-operator [--kubeconfig PATH] [--watch-namespace NS] [--leader-election-namespace NS]
//                [--leader-election-id NAME] [--identity ID] [--metrics-listen HOST:PORT]
//                [--aggregator-image IMG] [--worker-image IMG] [--hub-download-image IMG]
//                [--mutual-tls] [--workers N] [--aggregator-metrics-port PORT] [--worker-metrics-port PORT]
//                [--allow-host-path-prefix DIR]... [--metrics-namespace NS]...
//
// --allow-host-path-prefix: dataset paths under DIR may become hostPath volumes (none by default).
// --metrics-namespace: namespaces allowed to reach the runs' metrics ports (default: any).
//
// Only the replica holding the Lease reconciles; SIGTERM stops the workers, releases the Lease
// and exits 0.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "core/metrics/metrics_server.h"
#include "core/util/exit_codes.h"
#include "core/util/log.h"
#include "core/util/stop_signals.h"
#include "operator/kube/client.h"
#include "operator/kube/informer.h"
#include "operator/kube/leader_election.h"
#include "operator/kube/work_queue.h"
#include "operator/metrics.h"
#include "operator/membership_reconciler.h"
#include "operator/reconciler.h"

using namespace zk0;

namespace {

int usage() {
  std::cerr << "usage: zk0-operator [--kubeconfig PATH] [--watch-namespace NS] [--leader-election-namespace NS]\n"
               "                    [--leader-election-id NAME] [--identity ID] [--metrics-listen HOST:PORT]\n"
               "                    [--aggregator-image IMG] [--worker-image IMG] [--hub-download-image IMG]\n"
               "                    [--mutual-tls] [--workers N] [--aggregator-metrics-port PORT] [--worker-metrics-port PORT]\n"
               "                    [--allow-host-path-prefix DIR]... [--metrics-namespace NS]...\n";
  return kExitInvalidInput;
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  set_log_component("operator");
  std::string kubeconfig, watch_namespace, lease_namespace, lease_name = "zk0-operator", identity = hostname();
  std::string metrics_listen = "0.0.0.0:8080";
  int workers = 4;
  op::OperatorSettings settings;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], value;
    const auto eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (a != "--mutual-tls") {
      if (i + 1 >= argc) return usage();
      value = argv[++i];
    }
    try {
      if (a == "--kubeconfig") kubeconfig = value;
      else if (a == "--watch-namespace") watch_namespace = value;
      else if (a == "--leader-election-namespace") lease_namespace = value;
      else if (a == "--leader-election-id") lease_name = value;
      else if (a == "--identity") identity = value;
      else if (a == "--metrics-listen") metrics_listen = value;
      else if (a == "--aggregator-image") settings.aggregator_image = value;
      else if (a == "--worker-image") settings.worker_image = value;
      else if (a == "--hub-download-image") settings.hub_download_image = value;
      else if (a == "--mutual-tls") settings.mutual_tls = true;
      else if (a == "--allow-host-path-prefix") settings.host_path_prefixes.push_back(value);
      else if (a == "--metrics-namespace") settings.metrics_namespaces.push_back(value);
      else if (a == "--workers") workers = std::stoi(value);
      else if (a == "--aggregator-metrics-port") settings.aggregator_metrics_port = std::stoi(value);
      else if (a == "--worker-metrics-port") settings.worker_metrics_port = std::stoi(value);
      else return usage();
    } catch (const std::exception&) {
      return usage();
    }
  }
  if (workers < 1) return usage();

  std::atomic<bool> stop{false};
  StopSignals signals;  // after `stop`, so that its watcher ends before `stop` is gone

  try {
    kube::KubeClient client(kubeconfig.empty() ? kube::KubeConfig::in_cluster() : kube::KubeConfig::from_kubeconfig(kubeconfig));
    if (lease_namespace.empty()) lease_namespace = client.config().namespace_;
    op::OperatorMetrics metrics;
    MetricsServer metrics_server("operator", metrics_listen);
    metrics_server.serve(metrics.registry);
    metrics_server.serve(metrics.runs_by_phase);
    // Liveness: the endpoint answers. Readiness: a standby is ready to take over; the leader once
    // its informers hold the cluster's runs and pods.
    enum class Readiness { Standby, Syncing, Synced };
    std::atomic<Readiness> readiness{Readiness::Standby};
    metrics_server.serve_health("/healthz", [](std::string&) { return true; });
    metrics_server.serve_health("/readyz", [&readiness](std::string& reason) {
      if (readiness == Readiness::Syncing) reason = "leading; informers not synced yet";
      return readiness != Readiness::Syncing;
    });
    log_info("started", {kv("server", client.config().server), kv("watch_namespace", watch_namespace.empty() ? "*" : watch_namespace),
                         kv("identity", identity), kv("metrics_port", metrics_server.port()), kv("mutual_tls", settings.mutual_tls)});

    signals.on_stop([&] { stop = true; });

    kube::LeaderElector elector(client, {lease_namespace, lease_name, identity});
    if (!elector.acquire(stop)) return kExitOk;
    metrics.leader.Set(1);
    readiness = Readiness::Syncing;

    kube::WorkQueue queue;
    const std::string scope = watch_namespace.empty() ? "" : "/namespaces/" + watch_namespace;
    kube::Informer runs(
        client, std::string(op::Reconciler::kGroupVersionPath) + scope + "/federationruns", "",
        [&](const nlohmann::json& run, bool) { queue.add(kube::object_key(run)); },
        [&](const std::string& reason) { metrics.watch_restarted("federationruns", reason); });
    kube::Informer memberships(
        client, std::string(op::MembershipReconciler::kPath) + scope + "/federationmemberships", "",
        [&](const nlohmann::json& membership, bool) { queue.add(op::kMembershipKeyPrefix + kube::object_key(membership)); },
        [&](const std::string& reason) { metrics.watch_restarted("federationmemberships", reason); });
    // A pod is filed under its run's key or its membership's.
    kube::Informer pods(
        client, "/api/v1" + scope + "/pods", std::string(op::labels::kManagedBy) + "=" + op::labels::kManager,
        [&](const nlohmann::json& pod, bool) {
          const std::string owner = op::owner_key_of_pod(pod);
          if (!owner.empty()) queue.add(owner);
        },
        [&](const std::string& reason) { metrics.watch_restarted("pods", reason); }, op::owner_key_of_pod);
    metrics.runs_by_phase->count_with([&runs] {
      std::map<std::string, int> phases;
      for (const auto& r : runs.list([](const nlohmann::json&) { return true; }))
        ++phases[r.value("status", nlohmann::json::object()).value("phase", "Pending")];
      return phases;
    });
    struct StopCounting {  // before `runs` goes, on every way out of this scope
      op::OperatorMetrics& metrics;
      ~StopCounting() { metrics.runs_by_phase->count_with({}); }
    } stop_counting{metrics};
    pods.start();
    runs.start();
    memberships.start();
    std::thread sync_watch([&] {
      while (!stop)
        if (pods.wait_synced(std::chrono::milliseconds(200)) && runs.wait_synced(std::chrono::milliseconds(200)) &&
            memberships.wait_synced(std::chrono::milliseconds(200))) {
          readiness = Readiness::Synced;
          return;
        }
    });
    op::Reconciler reconciler(client, settings, metrics, runs, pods, op::http_status_reader());
    op::MembershipReconciler membership_reconciler(client, settings, memberships, pods, op::http_status_reader());
    const auto reconcile = [&](const std::string& key) {
      const std::string prefix = op::kMembershipKeyPrefix;
      return key.rfind(prefix, 0) == 0 ? membership_reconciler.reconcile(key.substr(prefix.size())) : reconciler.reconcile(key);
    };

    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([&] {
        // Pods before runs: a reconcile must see the run's pods, or it would create them twice.
        pods.wait_synced(std::chrono::minutes(10));
        while (auto key = queue.get()) {
          const auto t0 = std::chrono::steady_clock::now();
          std::string result = "success";
          try {
            const auto again = reconcile(*key);
            queue.forget(*key);
            if (again.count() > 0) {
              queue.add_after(*key, again);
              result = "requeue";
            }
          } catch (const std::exception& e) {
            result = "error";
            log_warn("reconcile_failed", {kv("run", *key), kv("error", e.what())});
            queue.add_rate_limited(*key);
          }
          queue.done(*key);
          metrics.reconciled(result, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
      });
    }
    const bool released = elector.hold(stop);  // returns when stopped or when the Lease is lost
    metrics.leader.Set(0);
    stop = true;
    queue.shut_down();
    for (auto& t : threads) t.join();
    sync_watch.join();
    runs.stop();
    memberships.stop();
    pods.stop();
    log_info("stopped", {kv("lease_released", released)});
    return released ? kExitOk : kExitError;
  } catch (const std::exception& e) {
    log_error("operator_failed", {kv("error", e.what())});
    return kExitError;
  }
}
