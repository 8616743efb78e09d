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

using Clock = std::chrono::steady_clock;

struct MetricsServer::Connection {
  int fd = -1;
  std::string request;
  std::string response;
  size_t sent = 0;
  bool writing = false;
  Clock::time_point opened, deadline;
};

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
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 64) != 0 ||
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
  thread_ = std::thread([this] { loop(); });
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

void MetricsServer::serve_health(const std::string& path, std::function<bool(std::string& reason)> check) {
  std::lock_guard<std::mutex> lock(mu_);
  health_routes_[path] = std::move(check);
}

std::string MetricsServer::respond(const std::string& request) {
  const auto reply = [](const char* status, const std::string& type, const std::string& body) {
    return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  };
  if (request.compare(0, 4, "GET ") != 0) return reply("405 Method Not Allowed", "text/plain", "GET only\n");
  const size_t end = request.find_first_of(" ?\r\n", 4);
  const std::string path = request.substr(4, end == std::string::npos ? std::string::npos : end - 4);
  if (path == "/metrics") return reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", exposition());
  std::function<std::string()> provider;
  std::function<bool(std::string&)> check;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = json_routes_.find(path); it != json_routes_.end()) provider = it->second;
    if (auto it = health_routes_.find(path); it != health_routes_.end()) check = it->second;
  }
  if (provider) return reply("200 OK", "application/json", provider());
  if (check) {
    std::string reason;
    return check(reason) ? reply("200 OK", "text/plain", "ok\n") : reply("503 Service Unavailable", "text/plain", reason + "\n");
  }
  return reply("404 Not Found", "text/plain", "");
}

void MetricsServer::loop() {
  std::vector<Connection> conns;
  const auto drop = [&](size_t i) {
    close(conns[i].fd);
    conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
  };
  while (!stop_) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (const auto& c : conns) fds.push_back({c.fd, static_cast<short>(c.writing ? POLLOUT : POLLIN), 0});
    poll(fds.data(), fds.size(), 200);
    const auto now = Clock::now();
    // Serve what is ready, newest index first so that erasing keeps the earlier indices valid.
    for (size_t i = conns.size(); i-- > 0;) {
      Connection& c = conns[i];
      const short revents = fds[i + 1].revents;
      if (now >= c.deadline || (revents & (POLLERR | POLLHUP | POLLNVAL) && !(revents & POLLIN))) {
        drop(i);
        continue;
      }
      if (!c.writing && (revents & POLLIN)) {
        char buf[2048];
        const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) {
          drop(i);
          continue;
        }
        c.request.append(buf, static_cast<size_t>(n));
        const bool complete = c.request.find("\r\n\r\n") != std::string::npos || c.request.find("\n\n") != std::string::npos;
        if (!complete && c.request.size() < kMaxRequestBytes) continue;
        c.response = complete ? respond(c.request)
                              : std::string("HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
        c.writing = true;
        c.deadline = now + kWriteTimeout;
      }
      if (c.writing && (revents & POLLOUT || c.sent == 0)) {
        const ssize_t w = send(c.fd, c.response.data() + c.sent, c.response.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
          drop(i);
          continue;
        }
        if (w > 0) c.sent += static_cast<size_t>(w);
        if (c.sent == c.response.size()) drop(i);
      }
    }
    if (fds[0].revents & POLLIN) {
      for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (conns.size() >= kMaxConnections) {
          // Full: the connection that has sent least for longest goes, so idle sockets held open
          // cannot lock out a scrape that arrives with its request.
          size_t victim = 0;
          for (size_t i = 1; i < conns.size(); ++i)
            if (!conns[i].writing && (conns[victim].writing || conns[i].opened < conns[victim].opened)) victim = i;
          drop(victim);
        }
        conns.push_back({fd, {}, {}, 0, false, now, now + kReadTimeout});
      }
    }
  }
  for (auto& c : conns) close(c.fd);
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
