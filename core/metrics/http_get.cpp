#include "core/metrics/http_get.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace zk0 {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

HttpResponse http_get(const std::string& host, int port, const std::string& path, size_t max_bytes,
                      std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string where = host + ":" + std::to_string(port) + path;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof *v6;
  } else {
    throw std::runtime_error(where + ": '" + host + "' is not an IP address");
  }
  const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(where + ": socket: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  const auto wait_for = [&](short events) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r <= 0) throw std::runtime_error(where + ": timed out after " + std::to_string(timeout.count()) + " ms");
  };
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS) throw std::runtime_error(where + ": connect: " + std::strerror(errno));
    wait_for(POLLOUT);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) throw std::runtime_error(where + ": connect: " + std::strerror(err));
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  for (size_t sent = 0; sent < request.size();) {
    wait_for(POLLOUT);
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) throw std::runtime_error(where + ": send: " + std::strerror(errno));
    if (n > 0) sent += static_cast<size_t>(n);
  }
  // Head and body together may not exceed the cap plus a few KiB of headers.
  const size_t limit = max_bytes + 8192;
  std::string raw;
  for (;;) {
    wait_for(POLLIN);
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n < 0) throw std::runtime_error(where + ": recv: " + std::strerror(errno));
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
    if (raw.size() > limit) throw std::runtime_error(where + ": answer larger than " + std::to_string(max_bytes) + " bytes");
  }
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || head_end == std::string::npos || raw.find(' ') == std::string::npos)
    throw std::runtime_error(where + ": not an HTTP answer");
  HttpResponse out;
  out.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  out.body = raw.substr(head_end + 4);
  if (out.body.size() > max_bytes) throw std::runtime_error(where + ": answer larger than " + std::to_string(max_bytes) + " bytes");
  return out;
}

}  // namespace zk0
