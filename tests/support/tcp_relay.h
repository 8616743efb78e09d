#pragma once
// A loopback TCP relay that stands for a home link between a worker and the aggregator: it
// forwards every connection to `target_port` and, armed, cuts the link once a direction has
// carried a number of bytes, mid-message: the receiving side gets the bytes up to the cut and
// then the end of the stream, the sending side a reset, as when a Wi-Fi or NAT mapping drops.
// Peers reconnect through it afterwards as usual.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace zk0::test {

class TcpRelay {
 public:
  enum Direction { ToServer = 0, ToClient = 1 };
  // `bytes_per_second` paces each direction of each connection (0: as fast as loopback goes), so
  // that a transfer takes the time it would on a slow link and its receiver reads it as it comes;
  // `latency` delays every byte by that much one way. (A user-space link: this kernel has no
  // netem qdisc, CONFIG_NET_SCH_NETEM is not set.)
  explicit TcpRelay(int target_port, uint64_t bytes_per_second = 0, std::chrono::milliseconds latency = {});
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  int port() const { return port_; }
  // Cuts the connection that carries `direction` past `bytes` more (counted over all connections
  // from now on); once only.
  void cut_after(Direction direction, uint64_t bytes);
  int cuts(Direction direction) const { return cuts_[direction]; }
  // Offline, every connection is reset and new ones are refused (the site lost its link);
  // online again, connections pass as before.
  void set_offline(bool offline) { offline_ = offline; }
  uint64_t carried(Direction direction) const { return carried_[direction]; }

 private:
  void accept_loop();
  void forward(int client, int server);

  int target_port_;
  uint64_t bytes_per_second_;
  std::chrono::milliseconds latency_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> offline_{false};
  std::mutex mu_;
  std::array<std::atomic<uint64_t>, 2> carried_{};
  std::array<int64_t, 2> cut_at_{-1, -1};  // guarded by mu_: carried_ value at which to cut
  std::array<std::atomic<int>, 2> cuts_{};
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace zk0::test
