#pragma once
// The operator's Prometheus metrics (prefix zk0_operator_).
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>

namespace zk0::op {

struct OperatorMetrics {
  OperatorMetrics();

  void reconciled(const std::string& result, double seconds);  // result: success, requeue, error
  void set_runs_by_phase(const std::map<std::string, int>& counts);
  void watch_restarted(const std::string& resource, const std::string& reason);

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& reconcile_total;
  prometheus::Histogram& reconcile_duration;
  prometheus::Family<prometheus::Gauge>& runs;
  prometheus::Gauge& leader;
  prometheus::Family<prometheus::Counter>& watch_restarts;
};

}  // namespace zk0::op
