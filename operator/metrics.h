#pragma once
// The operator's Prometheus metrics (prefix zk0_operator_).
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace zk0::op {

// zk0_operator_runs{phase}: counted from the runs the operator watches when Prometheus scrapes,
// so nothing on the reconcile path keeps it up to date.
class RunPhaseCollector : public prometheus::Collectable {
 public:
  using Phases = std::function<std::map<std::string, int>()>;
  void count_with(Phases phases);  // empty: report zero runs (a standby, or while stopping)
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mu_;
  Phases phases_;
};

struct OperatorMetrics {
  OperatorMetrics();

  void reconciled(const std::string& result, double seconds);  // result: success, requeue, error
  void watch_restarted(const std::string& resource, const std::string& reason);

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& reconcile_total;
  prometheus::Histogram& reconcile_duration;
  prometheus::Gauge& leader;
  prometheus::Family<prometheus::Counter>& watch_restarts;
  std::shared_ptr<RunPhaseCollector> runs_by_phase = std::make_shared<RunPhaseCollector>();
};

}  // namespace zk0::op
