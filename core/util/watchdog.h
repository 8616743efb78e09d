#pragma once
// Whether a piece of work is still moving, for liveness checks: the work arms the watchdog when
// it starts something that must progress, beats whenever it does (a chunk moved, a batch arrived,
// a loop came back to its deadline check), and disarms it when it goes back to waiting on others.
// Armed and without a beat for longer than the limit, the work is stalled; disarmed, nothing is.
// Every method may be called from any thread.
#include <chrono>
#include <mutex>
#include <string>

namespace zk0 {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;

  // limit_source names where the limit comes from (a spec field), so the reason says what to change.
  Watchdog(std::chrono::duration<double> limit, std::string limit_source);

  void arm(const std::string& activity);  // progress counts from now
  void beat();
  void disarm();
  // Empty while the work moves or nothing is armed; otherwise one line saying what stalled, the
  // same for as long as it stays stalled.
  std::string stalled() const;

 private:
  const Clock::duration limit_;
  const std::string limit_source_;
  mutable std::mutex mu_;
  std::string activity_;  // empty: disarmed
  Clock::time_point last_beat_;
};

}  // namespace zk0
