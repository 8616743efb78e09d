#pragma once
// A health check that is read (a watchdog's verdict) turned into events: a thread checks it every
// kPeriod and hands each change to `changed`, which logs it and pushes it where it must be seen
// (the aggregator's gRPC health service).
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace zk0 {

// The line a health check that changed logs (event=health_changed check=liveness healthy=0
// reason="..."); why_not is empty when it is healthy again.
void log_health_change(const std::string& check, const std::string& why_not);

class HealthWatch {
 public:
  static constexpr std::chrono::milliseconds kPeriod{250};

  // check: empty when healthy, otherwise why not. Healthy until the first check says otherwise.
  HealthWatch(std::function<std::string()> check, std::function<void(const std::string&)> changed);
  ~HealthWatch();
  HealthWatch(const HealthWatch&) = delete;
  HealthWatch& operator=(const HealthWatch&) = delete;

 private:
  void loop();

  const std::function<std::string()> check_;
  const std::function<void(const std::string&)> changed_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace zk0
