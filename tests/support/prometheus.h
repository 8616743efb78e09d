#pragma once
// A real Prometheus (Debian's /usr/bin/prometheus) in tests: its HTTP query API, and every PromQL
// expression of zk0's Grafana dashboards (helm/zk0/dashboards) with their variables filled in.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zk0::test {

// GET /api/v1/query on 127.0.0.1:port; null when nothing answers.
nlohmann::json prometheus_query(int port, const std::string& promql, const std::string& at = "");

struct PanelQuery {
  std::string dashboard, panel, description, expr;
};
// Every panel target of every dashboard, with $run set to `run` and Grafana's interval variables
// to fixed windows.
std::vector<PanelQuery> dashboard_queries(const std::string& run);
// Panels that need NVIDIA's DCGM exporter (their description says so): empty without a GPU.
bool needs_gpu(const PanelQuery& query);

}  // namespace zk0::test
