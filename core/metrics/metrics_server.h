#pragma once
// A component's Prometheus endpoint: registries served as text on http://ADDRESS/metrics, with
// the zk0_build_info gauge every component exports. Metric names follow Prometheus conventions:
// prefix zk0_, base units, _total on counters, labels of bounded cardinality (never the round).
//
// The HTTP side is a small accept loop of our own: prometheus-cpp's CivetWeb exposer fails to
// start in a process that has loaded LibTorch (CivetWeb dlopens OpenSSL a second time), and a
// scrape endpoint needs nothing beyond GET /metrics.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace zk0 {

class MetricsServer {
 public:
  // address: host:port; port 0 picks a free one (see port()). constant_labels go on every series
  // (the run and client names: dashboards filter by them however Prometheus scrapes).
  MetricsServer(const std::string& component, const std::string& address,
                std::map<std::string, std::string> constant_labels = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void serve(const std::shared_ptr<prometheus::Collectable>& metrics);  // a registry, or a collector
  // GET path answers provider()'s JSON: the aggregator's /status, which the operator reads.
  void serve_json(const std::string& path, std::function<std::string()> provider);
  int port() const { return port_; }
  std::string exposition();  // what GET /metrics answers

 private:
  void accept_loop();

  std::mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::map<std::string, std::string> constant_labels_;
  std::map<std::string, std::function<std::string()>> json_routes_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Buckets for durations from milliseconds to an hour.
prometheus::Histogram::BucketBoundaries duration_buckets();

// A metric without labels, registered in one call.
prometheus::Gauge& add_gauge(prometheus::Registry& registry, const char* name, const char* help);
prometheus::Counter& add_counter(prometheus::Registry& registry, const char* name, const char* help);
prometheus::Histogram& add_duration_histogram(prometheus::Registry& registry, const char* name, const char* help);

}  // namespace zk0
