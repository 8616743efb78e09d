#include "core/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace zk0 {

MetricsServer::MetricsServer(const std::string& component, const std::string& address,
                             std::map<std::string, std::string> constant_labels)
    : constant_labels_(std::move(constant_labels)) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("metrics: address must be host:port, not '" + address + "'");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error("metrics: '" + address.substr(0, colon) + "' is not an IPv4 address");
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 16) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (listen_fd_ >= 0) close(listen_fd_);
    throw std::runtime_error("metrics: cannot listen on " + address + ": " + why);
  }
  port_ = ntohs(addr.sin_port);
  auto build = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("zk0_build_info")
      .Help("Build of this zk0 component; the value is always 1")
      .Register(*build)
      .Add({{"component", component}, {"version", "0.1.0"}})
      .Set(1);
  serve(build);
  thread_ = std::thread([this] { accept_loop(); });
}

MetricsServer::~MetricsServer() {
  stop_ = true;
  thread_.join();
  close(listen_fd_);
}

void MetricsServer::serve(const std::shared_ptr<prometheus::Collectable>& metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  collectables_.push_back(metrics);
}

std::string MetricsServer::exposition() {
  std::vector<prometheus::MetricFamily> families;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : collectables_) {
      auto collected = r->Collect();
      families.insert(families.end(), collected.begin(), collected.end());
    }
  }
  for (auto& family : families)
    for (auto& metric : family.metric)
      for (const auto& [name, value] : constant_labels_) metric.label.push_back({name, value});
  return prometheus::TextSerializer().Serialize(families);
}

void MetricsServer::serve_json(const std::string& path, std::function<std::string()> provider) {
  std::lock_guard<std::mutex> lock(mu_);
  json_routes_[path] = std::move(provider);
}

void MetricsServer::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    timeval timeout{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char request[2048];
    const ssize_t n = read(fd, request, sizeof request - 1);
    request[n > 0 ? n : 0] = '\0';
    std::string path;
    if (std::strncmp(request, "GET ", 4) == 0) {
      const char* start = request + 4;
      const char* end = std::strpbrk(start, " ?\r\n");
      path.assign(start, end ? static_cast<size_t>(end - start) : 0);
    }
    std::string body, content_type;
    if (path == "/metrics") {
      body = exposition();
      content_type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
      std::function<std::string()> provider;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = json_routes_.find(path);
        if (it != json_routes_.end()) provider = it->second;
      }
      if (provider) {
        body = provider();
        content_type = "application/json";
      }
    }
    const std::string response =
        content_type.empty() ? "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                             : "HTTP/1.0 200 OK\r\nContent-Type: " + content_type + "\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body;
    for (size_t sent = 0; sent < response.size();) {
      const ssize_t w = send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += static_cast<size_t>(w);
    }
    close(fd);
  }
}

prometheus::Histogram::BucketBoundaries duration_buckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

prometheus::Gauge& add_gauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Counter& add_counter(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& add_duration_histogram(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, duration_buckets());
}

}  // namespace zk0
