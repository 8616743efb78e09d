#include "operator/metrics.h"

#include "core/metrics/metrics_server.h"

namespace zk0::op {

OperatorMetrics::OperatorMetrics()
    : registry(std::make_shared<prometheus::Registry>()),
      reconcile_total(prometheus::BuildCounter()
                          .Name("zk0_operator_reconcile_total")
                          .Help("Reconciles of FederationRuns by result (success, requeue, error)")
                          .Register(*registry)),
      reconcile_duration(add_duration_histogram(*registry, "zk0_operator_reconcile_duration_seconds",
                                                "Time to reconcile one FederationRun")),
      leader(add_gauge(*registry, "zk0_operator_leader", "1 while this replica holds the leader Lease")),
      watch_restarts(prometheus::BuildCounter()
                         .Name("zk0_operator_watch_restarts_total")
                         .Help("Watches re-established (reason reconnect) or relisted after 410 Gone (reason gone)")
                         .Register(*registry)) {
  for (const char* r : {"success", "requeue", "error"}) reconcile_total.Add({{"result", r}});
  for (const char* resource : {"federationruns", "pods"})
    for (const char* reason : {"reconnect", "gone"}) watch_restarts.Add({{"resource", resource}, {"reason", reason}});
}

void OperatorMetrics::reconciled(const std::string& result, double seconds) {
  reconcile_total.Add({{"result", result}}).Increment();
  reconcile_duration.Observe(seconds);
}

void RunPhaseCollector::count_with(Phases phases) {
  std::lock_guard<std::mutex> lock(mu_);
  phases_ = std::move(phases);
}

std::vector<prometheus::MetricFamily> RunPhaseCollector::Collect() const {
  std::map<std::string, int> counts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phases_) counts = phases_();
  }
  prometheus::MetricFamily family{"zk0_operator_runs", "FederationRuns by phase", prometheus::MetricType::Gauge, {}};
  for (const char* phase : {"Pending", "Running", "Suspended", "Succeeded", "Failed"}) {
    prometheus::ClientMetric m;
    m.label.push_back({"phase", phase});
    auto it = counts.find(phase);
    m.gauge.value = it == counts.end() ? 0 : it->second;
    family.metric.push_back(m);
  }
  return {family};
}

void OperatorMetrics::watch_restarted(const std::string& resource, const std::string& reason) {
  watch_restarts.Add({{"resource", resource}, {"reason", reason}}).Increment();
}

}  // namespace zk0::op
