#include "core/util/health_watch.h"

#include "core/util/log.h"

namespace zk0 {

void log_health_change(const std::string& check, const std::string& why_not) {
  if (why_not.empty()) log_info("health_changed", {kv("check", check), kv("healthy", true)});
  else log_warn("health_changed", {kv("check", check), kv("healthy", false), kv("reason", why_not)});
}

HealthWatch::HealthWatch(std::function<std::string()> check, std::function<void(const std::string&)> changed)
    : check_(std::move(check)), changed_(std::move(changed)), thread_([this] { loop(); }) {}

HealthWatch::~HealthWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void HealthWatch::loop() {
  std::string verdict;  // healthy until a check says otherwise
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, kPeriod, [this] { return stop_; })) {
    lock.unlock();
    std::string now = check_();
    if (now != verdict) changed_(verdict = std::move(now));
    lock.lock();
  }
}

}  // namespace zk0
