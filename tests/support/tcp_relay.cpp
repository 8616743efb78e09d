#include "support/tcp_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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

TcpRelay::TcpRelay(int target_port, uint64_t bytes_per_second)
    : target_port_(target_port), bytes_per_second_(bytes_per_second) {
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

void TcpRelay::forward(int client, int server) {
  const int from[2] = {client, server}, to[2] = {server, client};
  // Paced, a read takes at most 4 KiB, which then takes its share of a second to pass on.
  std::vector<char> buffer(bytes_per_second_ > 0 ? 4096 : 64 * 1024);
  bool cut = false;
  int cut_direction = 0;
  while (!stop_ && !cut) {
    if (offline_) {
      reset(client);
      reset(server);
      return;
    }
    pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    if (poll(p, 2, 100) <= 0) continue;
    bool closed = false;
    for (int d = 0; d < 2 && !cut && !closed; ++d) {
      if (!(p[d].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(from[d], buffer.data(), buffer.size());
      if (n <= 0) {
        closed = true;
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
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = write(to[d], buffer.data() + done, static_cast<size_t>(n - done));
        if (w <= 0) {
          closed = true;
          break;
        }
        done += w;
      }
      carried_[d] += static_cast<uint64_t>(n);
      if (bytes_per_second_ > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(n) * 1000000 / static_cast<int64_t>(bytes_per_second_)));
    }
    if (closed) break;
  }
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
