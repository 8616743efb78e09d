#include "support/prometheus.h"

#include <cstdio>
#include <filesystem>
#include <functional>

#include "core/util/fs.h"
#include "support/test_support.h"

namespace zk0::test {

using nlohmann::json;

json prometheus_query(int port, const std::string& promql, const std::string& at) {
  std::string escaped;
  for (unsigned char c : promql) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      escaped += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      escaped += buf;
    }
  }
  const std::string body = http_get(port, "/api/v1/query?query=" + escaped + (at.empty() ? "" : "&time=" + at));
  return body.empty() ? json() : json::parse(body);
}

std::vector<PanelQuery> dashboard_queries(const std::string& run) {
  std::vector<PanelQuery> queries;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ZK0_SOURCE_DIR) + "/helm/zk0/dashboards")) {
    const json board = json::parse(read_file(entry.path().string()));
    std::function<void(const json&)> walk = [&](const json& panels) {
      for (const auto& p : panels) {
        if (p.contains("panels")) walk(p["panels"]);
        for (const auto& t : p.value("targets", json::array())) {
          std::string expr = t.value("expr", "");
          for (const auto& [var, value] : std::vector<std::pair<std::string, std::string>>{
                   {"$__rate_interval", "1m"}, {"$__interval", "1m"}, {"$__range", "5m"}, {"$run", run}}) {
            for (size_t at; (at = expr.find(var)) != std::string::npos;) expr.replace(at, var.size(), value);
          }
          queries.push_back({board.value("title", ""), p.value("title", ""), p.value("description", ""), expr});
        }
      }
    };
    walk(board["panels"]);
  }
  return queries;
}

bool needs_gpu(const PanelQuery& query) { return query.description.rfind("Needs the DCGM exporter", 0) == 0; }

}  // namespace zk0::test
