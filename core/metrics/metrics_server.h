#pragma once
// A component's HTTP endpoint: Prometheus metrics on /metrics (registries served as text, with
// the zk0_build_info gauge every component exports), JSON documents (the aggregator's /status)
// and health checks (/healthz, /readyz). Metric names follow Prometheus conventions: prefix zk0_,
// base units, _total on counters, labels of bounded cardinality (never the round).
//
// The HTTP side is our own, one thread over non-blocking sockets: prometheus-cpp's CivetWeb
// exposer fails to start in a process that has loaded LibTorch (CivetWeb dlopens OpenSSL a second
// time). Any pod may reach this port, so nothing a peer does can stall it: requests are read and
// answered with deadlines, at most kMaxConnections are held (the one idle longest goes first),
// requests are capped at kMaxRequestBytes, and the thread stops within a poll interval.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
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
  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxRequestBytes = 8192;
  static constexpr std::chrono::seconds kReadTimeout{5};
  static constexpr std::chrono::seconds kWriteTimeout{10};

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
  // GET path answers 200 "ok" while check() is true, else 503 with check's reason.
  void serve_health(const std::string& path, std::function<bool(std::string& reason)> check);
  int port() const { return port_; }
  std::string exposition();  // what GET /metrics answers

 private:
  struct Connection;
  void loop();
  std::string respond(const std::string& request);

  std::mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::map<std::string, std::string> constant_labels_;
  std::map<std::string, std::function<std::string()>> json_routes_;
  std::map<std::string, std::function<bool(std::string&)>> health_routes_;
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
