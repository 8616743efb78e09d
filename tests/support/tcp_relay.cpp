#include "support/tcp_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <stdexcept>
#include <string>

namespace zk0::test {

namespace {
sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Closes with RST rather than FIN: to the peer the link died, it was not closed politely.
void reset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}
}  // namespace

TcpRelay::TcpRelay(int target_port, uint64_t bytes_per_second, std::chrono::milliseconds latency)
    : target_port_(target_port), bytes_per_second_(bytes_per_second), latency_(latency) {
  listener_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(0);
  if (bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listener_, 16) != 0)
    throw std::runtime_error("TcpRelay: cannot listen on loopback");
  socklen_t len = sizeof a;
  getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  shutdown(listener_, SHUT_RDWR);
  acceptor_.join();
  close(listener_);
  for (auto& t : threads_) t.join();
}

void TcpRelay::cut_after(Direction direction, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_at_[direction] = static_cast<int64_t>(carried_[direction] + bytes);
}

void TcpRelay::accept_loop() {
  while (!stop_) {
    pollfd p{listener_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const int client = accept(listener_, nullptr, nullptr);
    if (client < 0) continue;
    if (offline_) {
      reset(client);
      continue;
    }
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(target_port_);
    if (connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(server);
      reset(client);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([this, client, server] { forward(client, server); });
  }
}

namespace {
bool write_all(int fd, const char* data, size_t n) {
  for (size_t done = 0; done < n;) {
    // MSG_NOSIGNAL: a peer gone mid-write is a closed link, not a SIGPIPE for the whole test.
    const ssize_t w = send(fd, data + done, n - done, MSG_NOSIGNAL);
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}
}  // namespace

void TcpRelay::forward(int client, int server) {
  using Clock = std::chrono::steady_clock;
  const int from[2] = {client, server}, to[2] = {server, client};
  // Each direction is a link of its own: a read of at most 4 KiB (paced) occupies it for its share
  // of a second, and the bytes arrive `latency_` after they were put on it.
  struct InFlight {
    Clock::time_point due;
    std::string bytes;
  };
  std::deque<InFlight> in_flight[2];
  Clock::time_point link_free[2] = {Clock::now(), Clock::now()};
  std::vector<char> buffer(bytes_per_second_ > 0 ? 4096 : 64 * 1024);
  bool cut = false, closed = false;
  int cut_direction = 0;
  const auto deliver = [&](int d, bool all) {
    while (!in_flight[d].empty() && (all || in_flight[d].front().due <= Clock::now())) {
      if (!write_all(to[d], in_flight[d].front().bytes.data(), in_flight[d].front().bytes.size())) return false;
      in_flight[d].pop_front();
    }
    return true;
  };
  while (!stop_ && !cut && !closed) {
    if (offline_) {
      reset(client);
      reset(server);
      return;
    }
    for (int d = 0; d < 2; ++d) closed = closed || !deliver(d, false);
    if (closed) break;
    const auto now = Clock::now();
    auto wake = now + std::chrono::milliseconds(100);
    pollfd p[2];
    for (int d = 0; d < 2; ++d) {
      p[d] = {from[d], static_cast<short>(link_free[d] <= now ? POLLIN : 0), 0};
      if (link_free[d] > now) wake = std::min(wake, link_free[d]);
      if (!in_flight[d].empty()) wake = std::min(wake, in_flight[d].front().due);
    }
    const auto timeout = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
    if (poll(p, 2, static_cast<int>(std::max<int64_t>(0, timeout))) <= 0) continue;
    for (int d = 0; d < 2 && !cut && !closed; ++d) {
      if (!(p[d].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(from[d], buffer.data(), buffer.size());
      if (n <= 0) {
        closed = true;  // what is still on the links arrives before the close
        break;
      }
      {
        // Forward only up to the cut: the peer receives a message cut short.
        std::lock_guard<std::mutex> lock(mu_);
        if (cut_at_[d] >= 0 && carried_[d] + static_cast<uint64_t>(n) >= static_cast<uint64_t>(cut_at_[d])) {
          n = static_cast<ssize_t>(cut_at_[d] - static_cast<int64_t>(carried_[d]));
          cut_at_[d] = -1;
          cut = true;
          cut_direction = d;
          ++cuts_[d];
        }
      }
      const auto read_at = Clock::now();
      if (bytes_per_second_ > 0)
        link_free[d] = std::max(read_at, link_free[d]) +
                       std::chrono::microseconds(static_cast<int64_t>(n) * 1000000 / static_cast<int64_t>(bytes_per_second_));
      in_flight[d].push_back({(bytes_per_second_ > 0 ? link_free[d] : read_at) + latency_, std::string(buffer.data(), static_cast<size_t>(n))});
      carried_[d] += static_cast<uint64_t>(n);
    }
  }
  for (int d = 0; d < 2; ++d) deliver(d, true);
  if (cut) {
    // The side the bytes went to gets what was forwarded before the end of the stream (a reset
    // would have its kernel drop what its reader had not taken yet); the sender gets a reset.
    shutdown(to[cut_direction], SHUT_WR);
    close(to[cut_direction]);
    reset(from[cut_direction]);
  } else {
    close(client);
    close(server);
  }
}

}  // namespace zk0::test
